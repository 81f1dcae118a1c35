"""recguard plugin: the `apr` and `pamacf` defenses (torch is imported only while training)."""

from recguard import hookimpl

from recguard_pamacf.defenses import APRDefense, PamaCFDefense


@hookimpl
def register_defenses(register):
    register(APRDefense)
    register(PamaCFDefense)
