"""recguard plugin: the `apt` and `apt-rand` defenses and APT's adversarial-training
baseline `at` (torch is imported only while training)."""

from recguard import hookimpl

from recguard_apt.at import ATDefense
from recguard_apt.defense import APTDefense, APTRandDefense


@hookimpl
def register_defenses(register):
    register(APTDefense)
    register(APTRandDefense)
    register(ATDefense)
