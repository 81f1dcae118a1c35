"""recguard plugin: CF backbones beyond MF, one module each: PamaCF's LightGCN and NeuMF,
and RVD's explicit-rating victims I-AutoRec, CDAE and NSVD, and APT's baseline PCMF (also
registered as `rmf`, the name RVD gives the same Bampis et al. model)."""

from recguard import hookimpl

from recguard_cf_backbones.autorec import AutoRecBackbone
from recguard_cf_backbones.cdae import CDAEBackbone
from recguard_cf_backbones.lightgcn import LightGCNBackbone
from recguard_cf_backbones.neumf import NeuMFBackbone
from recguard_cf_backbones.nsvd import NSVDBackbone
from recguard_cf_backbones.pcmf import PCMFBackbone, RMFBackbone


@hookimpl
def register_backbones(register):
    register(LightGCNBackbone)
    register(NeuMFBackbone)
    register(AutoRecBackbone)
    register(CDAEBackbone)
    register(NSVDBackbone)
    register(PCMFBackbone)
    register(RMFBackbone)
