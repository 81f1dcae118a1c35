"""recguard plugin: the `mf` backbone (torch is imported only when a model is fitted)."""

from recguard import hookimpl

from recguard_mf.backbone import MFBackbone


@hookimpl
def register_backbones(register):
    register(MFBackbone)
