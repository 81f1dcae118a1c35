"""A private cache folder (cells, title embeddings) for the plugin's tests."""

import pytest

from recguard.testing import *  # noqa: F401,F403  (the host / register_plugin fixtures)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("RECGUARD_CACHE", str(tmp_path_factory.mktemp("recguard-sequential-cache")))
    yield
    mp.undo()
