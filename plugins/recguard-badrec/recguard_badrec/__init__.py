"""recguard plugin: the BadRec backdoor attack on LLM recommenders.

Its triggers enter titles through `recguard.kit.lm.triggers.insert_trigger`, which
defenses and scanners that synthesise poisoned titles (P-Scanner) share.
"""

from recguard import hookimpl

from recguard_badrec.attack import BadRecAttack
from recguard_badrec.triggers import TABLE7_TRIGGERS

__all__ = ["BadRecAttack", "TABLE7_TRIGGERS"]


@hookimpl
def register_attacks(register):
    register(BadRecAttack)
