"""recguard plugin: the sequential backbones `sasrec`, `gru4rec` and `fmlprec` of the LoRec
paper, and `cl4srec` (SASRec with CL4SRec's contrastive loss, a LoRec baseline); torch and
transformers are imported only when a model is fitted."""

from recguard import hookimpl

from recguard_sequential.cl4srec import CL4SRecBackbone
from recguard_sequential.fmlprec import FMLPRecBackbone
from recguard_sequential.gru4rec import GRU4RecBackbone
from recguard_sequential.sasrec import SASRecBackbone

BACKBONES = (SASRecBackbone, GRU4RecBackbone, FMLPRecBackbone, CL4SRecBackbone)


@hookimpl
def register_backbones(register):
    for backbone in BACKBONES:
        register(backbone)
