"""recguard plugin: the `apt` and `apt-rand` defenses (torch is imported only while training)."""

from recguard import hookimpl

from recguard_apt.defense import APTDefense, APTRandDefense


@hookimpl
def register_defenses(register):
    register(APTDefense)
    register(APTRandDefense)
