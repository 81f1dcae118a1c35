"""Time to embed ML-100K's LoRec user prompts with the causal LM (default: packaged SmolLM2-135M).

    python benchmarks/user_prompt_embedding.py [--model PATH] [--users 0] [--max-tokens 1024]
        [--batch-size 8] [--dtype float32] [--keep-cache | --fill-cache]

Reports separately: the one-off GGUF conversion (into a fresh temporary cache,
so it is always measured; --keep-cache uses the real cache instead), a load
from the converted folder, tokenising and truncating every user's prompt, and
embedding: prompts/s and tokens/s. Users are the `lorec` protocol's training
split (leave-one-out, seed 0). --users N embeds a random sample of N users
(seed 0) and extrapolates the time for all from their tokens/s and the total
token count (the prompts' lengths are computed for every user). The embedding
cache is not read: the numbers are the cold cost. --fill-cache (all users only)
embeds through `UserEncoder.encode` into the real cache, as the llm4dec and
lorec defenses do, so later runs with the same settings reuse every genuine
user's vector; on an empty cache the time is the same cold cost, and prompts
already cached are read back and reported as such (no rate is printed then).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="local folder or hub id (default: smollm2-135m)")
    parser.add_argument("--users", type=int, default=0, help="embed a random sample of N users (0: all)")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--keep-cache", action="store_true",
                        help="use the real recguard cache (a converted model there is reused)")
    parser.add_argument("--fill-cache", action="store_true",
                        help="embed all users into the real cache, for the defenses to reuse")
    args = parser.parse_args()
    if args.fill_cache and args.users:
        parser.error("--fill-cache embeds every user: leave out --users")
    if args.keep_cache or args.fill_cache:
        run(args)
        return
    with tempfile.TemporaryDirectory(prefix="recguard-bench-") as cache:
        os.environ["RECGUARD_CACHE"] = cache      # the converted model (~540 MB) is removed after
        run(args)


def run(args: argparse.Namespace) -> None:
    import torch

    from recguard.kit.lm import models as llm
    from recguard.data.prepare import prepare, preprocess
    from recguard.plugins import get_host
    from recguard.progress import progress_for
    from recguard_lorec.user_encoder import UserEncoder

    host = get_host()
    protocol = host.protocols.get("lorec")
    dataset = host.datasets.get("ml-100k")
    train = prepare(preprocess(dataset.load(None, dataset.Config()), protocol), protocol, 0).train
    print(f"ML-100K, lorec protocol training split: {train.n_users} users, {len(train)} rows; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")

    start = time.perf_counter()
    llm.load_causal_lm(args.model, dtype=args.dtype)
    first = time.perf_counter() - start
    enc = UserEncoder(model=args.model, max_tokens=args.max_tokens, batch_size=args.batch_size,
                      dtype=args.dtype, use_cache=args.fill_cache)
    start = time.perf_counter()
    lm, tokenizer = enc.load_model()
    again = time.perf_counter() - start
    packaged = llm.model_name(args.model) in llm.PACKAGED_MODELS
    print(f"model {llm.model_name(args.model)} ({args.dtype}, hidden {lm.config.hidden_size}): "
          f"first load {first:.1f} s{' (GGUF conversion included)' if packaged else ''}, "
          f"load from the converted folder {again:.1f} s")

    histories = enc.histories(train)
    start = time.perf_counter()
    fitted = [enc.fit_tokens(tokenizer, h) for h in histories]
    tok_seconds = time.perf_counter() - start
    lengths = np.array([len(ids) for ids, _ in fitted])
    truncated = sum(k < len(h) for (_, k), h in zip(fitted, histories))
    print(f"prompts: tokenised and truncated in {tok_seconds:.1f} s; tokens per prompt mean "
          f"{lengths.mean():.0f}, median {np.median(lengths):.0f}, max {lengths.max()} "
          f"(cap {args.max_tokens}); {truncated} of {len(histories)} users truncated (oldest items dropped)")

    users = np.arange(train.n_users)
    if 0 < args.users < train.n_users:
        users = np.sort(np.random.default_rng(0).choice(train.n_users, args.users, replace=False))
    progress = progress_for(quiet=False)
    progress.start_cell(1, "user prompt embedding")
    start = time.perf_counter()
    try:
        if args.fill_cache:
            emb = enc.encode(train, progress)      # the model loaded above, the real cache
            n_tokens = enc.last_stats["n_tokens"]
            print(f"cache: {enc.last_stats['embedded']} prompts embedded, "
                  f"{train.n_users - enc.last_stats['embedded']} read back")
            if enc.last_stats["embedded"] < train.n_users:
                return                             # a partly cached run times nothing useful
        else:
            emb, _, n_tokens = enc.encode_histories([histories[u] for u in users], progress)
    finally:
        progress.close()
    seconds = time.perf_counter() - start
    rate, token_rate = len(users) / seconds, n_tokens.sum() / seconds
    print(f"embedded {len(users)} users ({n_tokens.sum()} tokens, batch {args.batch_size}) in "
          f"{seconds:.1f} s: {rate:.2f} prompts/s, {token_rate:.0f} tokens/s; "
          f"matrix {emb.shape}, load average {os.getloadavg()[0]:.1f} at the end")
    if len(users) < train.n_users:
        print(f"all {train.n_users} users ({lengths.sum()} tokens) at that rate: "
              f"~{lengths.sum() / token_rate / 60:.0f} min")


if __name__ == "__main__":
    main()
