"""Answering speed of the packaged SmolLM2 under each `dtype` on this machine's CPU.

    python benchmarks/llm_precision.py                    # mixed, bfloat16, float32
    python benchmarks/llm_precision.py --device cuda bfloat16

For each dtype (`recguard.kit.lm.models.load_causal_lm`): one forward pass over 8 left-padded
prompts of about 440 tokens (LLaRA-sized) and a greedy generation of 32 new tokens for
them, each timed twice after loading; prints the seconds. `mixed` is float32 weights under
bf16 autocast, the CPU default before bf16 weights were (`recguard.kit.lm.models.resolve_precision`).
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dtypes", nargs="*", default=["mixed", "bfloat16", "float32"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from recguard.kit.lm.models import compute_context, load_causal_lm

    history = ", ".join(f"Movie number {i} (199{i % 10})" for i in range(40))
    prompts = [f"Recommend a movie. The user watched {history}. Answer:"] * 8
    print("| dtype | forward s | generate 32 tokens s |\n|---|---|---|")
    for dtype in args.dtypes:
        lm, tokenizer = load_causal_lm(None, dtype=dtype, device=args.device)
        tokenizer.padding_side = "left"
        batch = tokenizer(prompts, return_tensors="pt", padding=True).to(lm.device)
        for _ in range(2):
            with torch.inference_mode(), compute_context(lm):
                start = time.perf_counter()
                lm(**batch)
                forward = time.perf_counter() - start
                start = time.perf_counter()
                lm.generate(**batch, max_new_tokens=32, do_sample=False,
                            pad_token_id=tokenizer.pad_token_id)
                generate = time.perf_counter() - start
            print(f"| {dtype} | {forward:.2f} | {generate:.2f} |", flush=True)
        del lm


if __name__ == "__main__":
    main()
