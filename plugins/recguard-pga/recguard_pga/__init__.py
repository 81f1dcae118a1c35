"""recguard plugin: the PGA attack (torch is imported only when the attack runs)."""

from recguard import hookimpl

from recguard_pga.attack import PGAAttack


@hookimpl
def register_attacks(register):
    register(PGAAttack)
