"""Answering speed of the packaged SmolLM2 under each `dtype` and batch size on this machine.

    python benchmarks/llm_precision.py                          # mixed, bfloat16, float32
    python benchmarks/llm_precision.py float32 --batch-sizes 1,8,16,32 --tokens 160
    python benchmarks/llm_precision.py --device cuda bfloat16

For each dtype (`recguard.kit.lm.models.load_causal_lm`) and batch size, on a batch of
prompts of about ``--tokens`` tokens (440: LLaRA-sized at the paper's 20 candidates; 160:
the `llara-cpu` preset's), each timed twice after loading: the prefill (a greedy
generation of one token), its prompt tokens per second, a greedy generation of exactly 32
tokens, and the milliseconds of each token after the first (the difference over 31).
`mixed` is float32 weights under bf16 autocast, the CPU default before bf16 weights were
(`recguard.kit.lm.models.resolve_precision`).
"""

from __future__ import annotations

import argparse
import time

NEW_TOKENS = 32


def prompt_of(tokenizer, n_tokens: int) -> str:
    """A recommendation-like prompt of about ``n_tokens`` tokens."""
    titles, i = [], 0
    while True:
        titles.append(f"Movie number {i} (199{i % 10})")
        text = f"Recommend a movie. The user watched {', '.join(titles)}. Answer:"
        if len(tokenizer(text)["input_ids"]) >= n_tokens:
            return text
        i += 1


def timed_generate(lm, tokenizer, batch, n_new: int) -> float:
    """Seconds of a greedy generation of exactly ``n_new`` tokens for ``batch``."""
    import torch

    from recguard.kit.lm.models import compute_context

    with torch.inference_mode(), compute_context(lm):
        start = time.perf_counter()
        lm.generate(**batch, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                    pad_token_id=tokenizer.pad_token_id)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dtypes", nargs="*", default=["mixed", "bfloat16", "float32"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", default="8", help="comma-separated, e.g. 1,8,16,32")
    parser.add_argument("--tokens", type=int, default=440, help="prompt length in tokens")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    from recguard.kit.lm.models import load_causal_lm

    print("| dtype | batch | prefill s | prefill tokens/s | generate 32 tokens s | ms per further token |\n"
          "|---|---|---|---|---|---|")
    for dtype in args.dtypes:
        lm, tokenizer = load_causal_lm(None, dtype=dtype, device=args.device)
        tokenizer.padding_side = "left"
        prompt = prompt_of(tokenizer, args.tokens)
        for size in batch_sizes:
            batch = tokenizer([prompt] * size, return_tensors="pt", padding=True).to(lm.device)
            n_tokens = int(batch["attention_mask"].sum())
            for _ in range(2):
                prefill = timed_generate(lm, tokenizer, batch, 1)
                generate = timed_generate(lm, tokenizer, batch, NEW_TOKENS)
                per_token = max(generate - prefill, 0.0) / (NEW_TOKENS - 1) * 1000
                print(f"| {dtype} | {size} | {prefill:.2f} | {n_tokens / prefill:.0f} | "
                      f"{generate:.2f} | {per_token:.0f} |", flush=True)
        del lm


if __name__ == "__main__":
    main()
