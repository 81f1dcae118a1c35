"""Machinery of optimised poisoning attacks and influence functions: surrogate recommenders,
fake-profile helpers, ALS with fake rows, Hessian-vector products (needs ``recguard[torch]``)."""
