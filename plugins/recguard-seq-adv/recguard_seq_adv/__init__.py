"""recguard plugin: the `advtrain` defense, adversarial training on the input items of a
sequential recommender (torch is imported only while training)."""

from recguard import hookimpl

from recguard_seq_adv.advtrain import AdvTrainDefense


@hookimpl
def register_defenses(register):
    register(AdvTrainDefense)
