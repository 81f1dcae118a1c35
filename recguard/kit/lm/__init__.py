"""Causal language models for LLM recommenders, attacks and defenses: loading, LoRA SFT,
batched queries, prompt templates, triggers (needs ``recguard[lm]``)."""
