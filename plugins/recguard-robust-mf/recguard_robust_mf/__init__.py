"""recguard plugin: the `ltsmf` defense, RVD's least-trimmed-squares MF baseline (torch is
imported only while training). RVD's other robust-MF baseline, RMF (Bampis et al. 2017), is
the `rmf` backbone of recguard-cf-backbones: the same model APT calls PCMF."""

from recguard import hookimpl

from recguard_robust_mf.ltsmf import LTSMFDefense


@hookimpl
def register_defenses(register):
    register(LTSMFDefense)
