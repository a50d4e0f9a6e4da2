import pytest

from tests.export.helpers import exported


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """(variant, precision) -> path of the small peaked export; each is written once per worker
    process (helpers.exported caches it, for tests/export too)."""
    return lambda variant, precision: exported(tmp_path_factory, variant, precision)[1].path
