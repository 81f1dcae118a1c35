"""recguard plugin: the `tna` attack (torch is imported only while poisoning)."""

from recguard import hookimpl

from recguard_tna.attack import TNAAttack


@hookimpl
def register_attacks(register):
    register(TNAAttack)
