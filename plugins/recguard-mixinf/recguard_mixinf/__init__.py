"""recguard plugin: the `mixinf` and `mixrand` attacks (torch is imported only while poisoning)."""

from recguard import hookimpl

from recguard_mixinf.attacks import MixInfAttack, MixRandAttack


@hookimpl
def register_attacks(register):
    register(MixInfAttack)
    register(MixRandAttack)
