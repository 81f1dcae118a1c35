"""recguard plugin: LLM recommender backbones, `tallrec` (yes_no) and `llara` (choose).

Importing this package imports neither torch, transformers, trl nor peft.
"""

from recguard import hookimpl

from recguard_llmrec.llara import LLaRABackbone
from recguard_llmrec.tallrec import TALLRecBackbone

BACKBONES = (TALLRecBackbone, LLaRABackbone)


@hookimpl
def register_backbones(register):
    for backbone in BACKBONES:
        register(backbone)
