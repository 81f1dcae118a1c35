"""recguard plugin: the Random, Average and Bandwagon attacks."""

from recguard import hookimpl

from recguard_heuristics.attacks import AverageAttack, BandwagonAttack, RandomAttack


@hookimpl
def register_attacks(register):
    for attack in (RandomAttack, AverageAttack, BandwagonAttack):
        register(attack)
