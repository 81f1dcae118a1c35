"""Embedding collaborative filtering: the shared training loop, its defense hooks, and
fine-tune-and-restore (needs ``recguard[torch]``)."""
