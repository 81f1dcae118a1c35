"""recguard plugin: LLM-based defenses from the LoRec paper, sharing the LLM user encoder.

`llm4dec` (sec. 4) and `lorec` (the LLM-enhanced calibrator, sec. 5).
Importing this package imports neither torch nor transformers.
"""

from recguard import hookimpl

from recguard_lorec.llm4dec import LLM4DecDefense
from recguard_lorec.lorec import LoRecDefense


@hookimpl
def register_defenses(register):
    register(LLM4DecDefense)
    register(LoRecDefense)
