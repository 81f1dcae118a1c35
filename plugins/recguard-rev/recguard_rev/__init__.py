"""recguard plugin: the Rev attack (torch is imported only when the attack runs)."""

from recguard import hookimpl

from recguard_rev.attack import RevAttack


@hookimpl
def register_attacks(register):
    register(RevAttack)
