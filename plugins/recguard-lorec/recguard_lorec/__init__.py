"""recguard plugin: LLM-based defenses from the LoRec paper, sharing the LLM user encoder.

`llm4dec` is registered; `lorec` (the LLM-enhanced calibrator) is still to come.
Importing this package imports neither torch nor transformers.
"""

from recguard.hookspecs import hookimpl

from recguard_lorec.llm4dec import LLM4DecDefense


@hookimpl
def register_defenses(register):
    register(LLM4DecDefense)
