import os

import pytest
import torch

# Without a GPU the Triton kernels run in Triton's interpreter. It must be chosen before Triton
# is imported anywhere in the session (any test module may import it first); with a GPU the
# kernel tests run on it instead.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
