"""recguard plugin: the BadRec backdoor attack on LLM recommenders.

`insert_trigger` is public: defenses and scanners that synthesise poisoned
titles (P-Scanner) insert triggers the same way.
"""

from recguard import hookimpl

from recguard_badrec.attack import BadRecAttack
from recguard_badrec.triggers import TABLE7_TRIGGERS, insert_trigger

__all__ = ["BadRecAttack", "TABLE7_TRIGGERS", "insert_trigger"]


@hookimpl
def register_attacks(register):
    register(BadRecAttack)
