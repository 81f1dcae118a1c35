"""recguard plugin: inference-time backdoor defenses for LLM recommenders.

The baselines of BadRec / P-Scanner (Ning, Fan & Li, appendix B.1.1-B.1.2): `rd`,
`llmsi`, `onion`, `paraphraser`, `strip`, `rpd`, `cos`. Each wraps the fitted model in a
`recguard.llm_contracts.AnswerFilter`. Importing this package imports neither torch nor
transformers.
"""

from recguard import hookimpl

from recguard_backdoor_baselines.cos import COSDefense
from recguard_backdoor_baselines.llmsi import LLMSIDefense
from recguard_backdoor_baselines.onion import ONIONDefense
from recguard_backdoor_baselines.paraphraser import ParaphraserDefense
from recguard_backdoor_baselines.rd import RDDefense
from recguard_backdoor_baselines.rpd import RPDDefense
from recguard_backdoor_baselines.strip import STRIPDefense

DEFENSES = (RDDefense, LLMSIDefense, ONIONDefense, ParaphraserDefense, STRIPDefense,
            RPDDefense, COSDefense)


@hookimpl
def register_defenses(register):
    for defense in DEFENSES:
        register(defense)
