import pytest

from tests.text.helpers import train_tokenizer


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    """A checkpoint folder with the tiny tokenizer (model_max_length 512); tests never change it."""
    directory = tmp_path_factory.mktemp("checkpoint")
    train_tokenizer(directory)
    return directory
