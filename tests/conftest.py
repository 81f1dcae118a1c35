"""Host test fixtures: a private cache folder and a fresh plugin host per test."""

from __future__ import annotations

import pytest

from recguard.testing import *  # noqa: F401,F403  (fixtures shipped for plugin authors)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep test runs out of the user's cache (one folder for the whole session)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RECGUARD_CACHE", str(tmp_path_factory.mktemp("recguard-cache")))
    yield
    mp.undo()
