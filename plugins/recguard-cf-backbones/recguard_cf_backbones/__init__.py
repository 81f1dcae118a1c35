"""recguard plugin: CF backbones of the PamaCF paper beyond MF, one module each."""

from recguard.hookspecs import hookimpl

from recguard_cf_backbones.lightgcn import LightGCNBackbone


@hookimpl
def register_backbones(register):
    register(LightGCNBackbone)
