"""recguard plugin: the `apr`, `pamacf` and `sharpcf` defenses (torch is imported only while
training)."""

from recguard import hookimpl

from recguard_pamacf.defenses import APRDefense, PamaCFDefense
from recguard_pamacf.sharpcf import SharpCFDefense


@hookimpl
def register_defenses(register):
    register(APRDefense)
    register(PamaCFDefense)
    register(SharpCFDefense)
