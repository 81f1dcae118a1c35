"""The plugin author's library: method machinery shared by several plugins.

Nothing here is part of the host's core, and the core never imports it. Use it from
a plugin (``from recguard.kit.cf.embedding import EmbeddingBackbone``):

    kit.cf      embedding CF: the epoch loop and defense hooks every torch backbone honours
                (`loop`), the dot-product CF backbone and its paper defaults (`embedding`),
                fine-tuning a trained model on some rows and restoring it (`finetune_restore`)
    kit.poison  optimised fake profiles: the attacker's surrogate recommender (`surrogate`),
                profile helpers (`profiles`), ALS with fake rows in the graph (`als`),
                Hessian-vector products and damped CG (`influence`)
    kit.lm      causal LMs: loading (`models`), LoRA SFT through TRL (`sft`), batched
                queries (`generation`), packaged prompt templates (`prompts`), backdoor
                triggers in titles (`triggers`)

Its heavy dependencies are extras of the host, pinned there once for every plugin:
``recguard[torch]`` for kit.cf and kit.poison, ``recguard[lm]`` for kit.lm. They are
imported inside the functions that need them.
"""
