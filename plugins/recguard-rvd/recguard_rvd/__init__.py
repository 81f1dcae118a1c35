"""recguard plugin: the `rvd` defense (torch is imported only while serving)."""

from recguard import hookimpl

from recguard_rvd.defense import RVDDefense


@hookimpl
def register_defenses(register):
    register(RVDDefense)
