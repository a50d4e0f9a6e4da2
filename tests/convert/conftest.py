import pytest

pytest.importorskip("transformers", reason="the conversion tests build checkpoints with transformers (.[test])")

from tests.convert.helpers import save_tiny  # noqa: E402

_SAVED: dict = {}


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """checkpoint(family, architecture=None) -> (directory, transformers model), saved once per session."""
    def get(family: str, architecture: str | None = None):
        key = (family, architecture)
        if key not in _SAVED:
            directory = tmp_path_factory.mktemp(f"{family}-{architecture or 'base'}")
            _SAVED[key] = save_tiny(directory, family, architecture)
        return _SAVED[key]

    return get
