"""recguard: evaluate recommender systems under poisoning and backdoor attacks.

The host is small: it defines the component contracts (`recguard.contracts`),
the plugin hooks (`recguard.hookspecs`), data handling (`recguard.data`), the
evaluation protocols (`recguard.protocols`), the one evaluation pipeline
(`recguard.pipeline.cell`) and result records (`recguard.records`). Every method
lives in a plugin package.
"""

__version__ = "0.1.0"
