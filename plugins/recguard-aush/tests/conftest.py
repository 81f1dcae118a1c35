"""The host's test fixtures, a private cache folder among them."""

from recguard.testing import *  # noqa: F401,F403
