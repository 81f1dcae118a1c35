"""recguard plugin: the `dp` attack (torch is imported only while poisoning)."""

from recguard import hookimpl

from recguard_dp.attack import DPAttack


@hookimpl
def register_attacks(register):
    register(DPAttack)
