"""recguard plugin: the sequential backbones `sasrec`, `gru4rec` and `fmlprec` of the LoRec
paper (torch and transformers are imported only when a model is fitted)."""

from recguard import hookimpl

from recguard_sequential.fmlprec import FMLPRecBackbone
from recguard_sequential.gru4rec import GRU4RecBackbone
from recguard_sequential.sasrec import SASRecBackbone

BACKBONES = (SASRecBackbone, GRU4RecBackbone, FMLPRecBackbone)


@hookimpl
def register_backbones(register):
    for backbone in BACKBONES:
        register(backbone)
