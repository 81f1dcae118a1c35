"""recguard plugin: the AUSH attack (Lin et al., CIKM 2020)."""

from recguard import hookimpl

from recguard_aush.attack import AUSHAttack


@hookimpl
def register_attacks(register):
    register(AUSHAttack)
