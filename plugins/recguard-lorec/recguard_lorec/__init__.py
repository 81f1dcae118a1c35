"""recguard plugin: LLM-based defenses (LoRec, LLM4Dec), sharing the LLM user encoder.

Only the user encoder (`recguard_lorec.user_encoder.UserEncoder`) exists so far;
the defenses will register here. Importing this package imports neither torch
nor transformers.
"""

from recguard.hookspecs import hookimpl


@hookimpl
def register_defenses(register):
    """No defense yet: `llm4dec` and `lorec` will be registered here."""
