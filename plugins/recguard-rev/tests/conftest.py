"""Host test fixtures: a private cache folder and a fresh plugin host per test."""

from __future__ import annotations

from recguard.testing import *  # noqa: F401,F403  (fixtures shipped for plugin authors)
