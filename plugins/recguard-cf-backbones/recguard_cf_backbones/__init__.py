"""recguard plugin: CF backbones of the PamaCF paper beyond MF, one module each."""

from recguard import hookimpl

from recguard_cf_backbones.lightgcn import LightGCNBackbone
from recguard_cf_backbones.neumf import NeuMFBackbone


@hookimpl
def register_backbones(register):
    register(LightGCNBackbone)
    register(NeuMFBackbone)
