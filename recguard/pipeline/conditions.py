"""The conditions of a cell.

    clean             the backbone on genuine training data
    attacked          the backbone on genuine + fake users (an LLM: + poisoned samples)
    clean+defense     the defense applied to the clean data    (with a defense)
    attacked+defense  the defense applied to the poisoned data (with a defense)

A task kind with one defense row (the LLM kinds, as the paper's tables) keeps only the
last defended condition: attacked+defense, or clean+defense without an attack.
"""

from __future__ import annotations

CLEAN, ATTACKED = "clean", "attacked"
CLEAN_DEF, ATTACKED_DEF = "clean+defense", "attacked+defense"
DEFENDED = {CLEAN: CLEAN_DEF, ATTACKED: ATTACKED_DEF}
BASE = {defended: base for base, defended in DEFENDED.items()}   # what a defense is applied to
# the rows of an LLM cell as Ning et al.'s tables name them (the defended row: the defense's name)
ROW_NAMES = {CLEAN: "Benign", ATTACKED: "BadRec"}


def undefended_conditions(plan) -> list[str]:
    return [CLEAN] + ([ATTACKED] if plan.has_attack else [])


def conditions_of(plan, every_defended: bool = True) -> list[str]:
    """The cell's conditions in the order they run; ``every_defended=False``: one defense row."""
    undefended = undefended_conditions(plan)
    if not plan.has_defense:
        return undefended
    defended = [DEFENDED[c] for c in undefended]
    return undefended + (defended if every_defended else defended[-1:])
