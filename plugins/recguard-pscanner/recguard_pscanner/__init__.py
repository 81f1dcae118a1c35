"""recguard plugin: P-Scanner (BadRec paper, sec. 4), an inference-time defense for LLM recommenders.

Importing this package imports neither torch nor transformers.
"""

from recguard import hookimpl

from recguard_pscanner.defense import PScannerDefense


@hookimpl
def register_defenses(register):
    register(PScannerDefense)
