"""recguard plugin: the `stdenoise` and `graphrfi` defenses for CF backbones (torch is imported
only while training)."""

from recguard import hookimpl

from recguard_cf_denoise.graphrfi import GraphRfiDefense
from recguard_cf_denoise.stdenoise import StDenoiseDefense


@hookimpl
def register_defenses(register):
    register(StDenoiseDefense)
    register(GraphRfiDefense)
