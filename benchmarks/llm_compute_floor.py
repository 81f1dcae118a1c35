"""The main cell's arithmetic: the matrix products each phase must compute, and the least
time this machine takes for them.

    python benchmarks/llm_compute_floor.py                  # seed 0, the README's main cell
    python benchmarks/llm_compute_floor.py --seed 1

Nothing is fitted. The script builds the main cell's plan (`recguard eval --attack badrec
--defense p-scanner`: LLaRA under `llara-cpu`), draws the seed's samples and requests as
the pipeline does, renders every prompt the cell's fits and answers read, and counts their
tokens (padded as the cell pads them). From the counts and the LM's shape it takes the
FLOPs of each phase's matrix products:

- a fine-tune step: 2 x (linear parameters) per token forward and as much again backward
  (the base weights are frozen, so the backward computes input gradients only), plus the
  vocabulary projection at the completion's tokens;
- a prefill: 2 x (linear parameters) per prompt token and the projection at the last;
- decoding: one step per generated token of the longest answer in a batch, bound by
  reading the weights rather than by arithmetic, so it is timed, not counted: the answer's
  length is taken as the target title's tokens + the end token (a model that answers
  with a candidate's title);
- the scanner: its rounds' balanced samples (`scanner.balanced_order` on Eq. 4's expected
  two thirds of 'Yes', the prompts without their triggers: a lower bound) in steps of
  ``batch_size``, its scoring of each round, the held-out check and the titles of the
  cell it scans (the shared prompt head run once).

It then times this machine's float32 matrix products at each phase's number of rows (the
fastest of the LM's three projection shapes) and one decoding step of the packaged
SmolLM2, and prints per phase the FLOPs and the least seconds they take at those rates: a
floor that no implementation of the same arithmetic on this machine goes under. The
agent's rewrites, SASRec, the model's loading and everything but the matrix products
(attention, norms, the optimiser) are not counted; `benchmarks/llm_main_cell.py` gives
the seconds each phase took.
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Phase:
    group: str           # the record's phase it is part of
    name: str
    tokens: int          # tokens through the linear layers
    flops: float         # matrix-product FLOPs
    rows: int            # rows of its matrix products: the tokens of a step or a batch
    decode_steps: int = 0


def linear_parameters(model) -> tuple[int, int]:
    """(parameters of the transformer's linear layers, the vocabulary projection's)."""
    import torch

    head = model.get_output_embeddings().weight.numel()
    body = sum(m.weight.numel() for m in model.modules()
               if isinstance(m, torch.nn.Linear) and m is not model.get_output_embeddings())
    return body, head


def training_tokens(lengths: list[int], batch_size: int) -> tuple[int, int]:
    """(tokens, tokens per step) of fine-tuning on ``lengths`` in order, in steps of
    ``batch_size`` rows, each step padded as trl pads (`generation.padded_width`)."""
    from recguard.kit.lm.generation import padded_width

    steps = [lengths[i:i + batch_size] for i in range(0, len(lengths), batch_size)]
    tokens = sum(padded_width(max(step)) * len(step) for step in steps)
    return tokens, tokens // len(steps)


def fine_tune_phase(group, name, tokenizer, prompts, completions, batch_size, body, head) -> Phase:
    """The samples in order, each with its end token, in steps of ``batch_size``."""
    eos = 1 if tokenizer.eos_token_id is not None else 0
    lengths = [len(tokenizer(p + c, add_special_tokens=False)["input_ids"]) + eos
               for p, c in zip(prompts, completions)]
    answer = [len(tokenizer(c, add_special_tokens=False)["input_ids"]) + eos for c in completions]
    tokens, per_step = training_tokens(lengths, batch_size)
    return Phase(group, name, tokens, 2 * (2 * body * tokens) + 2 * 2 * head * sum(answer),
                 per_step)


def prefill_phase(group, name, lengths, batch_size, body, head, decode: list[int]) -> Phase:
    """Prompts batched as the cell batches them (`generation._sorted_batches`), left-padded;
    a batch decodes until its longest answer (``decode``: each prompt's answer tokens) ends."""
    from recguard.kit.lm.generation import _sorted_batches, padded_width

    batches = [rows for rows, _ in _sorted_batches(lengths, batch_size)]
    tokens = sum(padded_width(max(lengths[i] for i in rows)) * len(rows) for rows in batches)
    steps = sum(max(decode[i] for i in rows) for rows in batches)
    return Phase(group, name, tokens, 2 * body * tokens + 2 * head * len(lengths),
                 tokens // len(batches), steps)


def cell_phases(seed: int) -> tuple[list[Phase], object]:
    """The main cell's counted phases for ``seed``, and the LM (for the timings)."""
    from recguard.kit.lm.generation import _shared_prefix
    from recguard.kit.lm.models import load_causal_lm
    from recguard.kit.lm.prompts import load_prompt
    from recguard.pipeline.cell import load
    from recguard.pipeline.conditions import ATTACKED, CLEAN
    from recguard.pipeline.kinds import kind_for
    from recguard.plan import CellSpec, make_plan
    from recguard.progress import Progress
    from recguard_llmrec.hybrid import add_item_tokens
    from recguard_llmrec.llara import completion, curriculum_order, llara_templates, render_prompt
    from recguard_pscanner.defense import plan_of
    from recguard_pscanner.scanner import SCAN_PROMPT, balanced_order, scan_prompts
    from recguard_pscanner.triggers import benign_pool

    plan = make_plan(CellSpec(attack="badrec", defense="p-scanner", seeds=(seed,)))
    cfg = plan.backbone.config
    _, data = load(plan)
    seed_data = kind_for(plan, Progress()).prepare(data, seed)
    task, triggered = seed_data.extra["task"], seed_data.extra["triggered"]
    model, tokenizer = load_causal_lm(cfg.model, dtype="float32", device="cpu")
    body, head = linear_parameters(model)
    scan_tokenizer = copy.deepcopy(tokenizer)        # the scanner reads no item slot tokens
    add_item_tokens(tokenizer, len(task.catalog))
    templates = llara_templates()
    phases = []
    for condition, row in ((CLEAN, "Benign"), (ATTACKED, "BadRec")):
        samples = seed_data.extra["samples"][condition]
        steps = curriculum_order(len(samples), cfg.epochs, seed, len(templates),
                                 cfg.prompt == "hybrid", cfg.curriculum)
        prompts = [render_prompt(samples[s], task.catalog, templates[t], h) for s, h, t in steps]
        completions = [completion(samples[s], task.catalog) for s, _, _ in steps]
        label = f"{row}: fine-tuning ({len(prompts)} steps of {cfg.train_batch_size})"
        phases.append(fine_tune_phase(f"{row}: fine-tuning", label, tokenizer, prompts,
                                      completions, cfg.train_batch_size, body, head))
    template, hybrid = templates[max(cfg.template, 0)], cfg.prompt == "hybrid"
    answer_length = [len(tokenizer(completion(r, task.catalog), add_special_tokens=False)["input_ids"])
                     + 1 for r in task.test]                       # the title and the end token
    for requests, what in ((task.test, "requests"), (triggered, "triggered requests")):
        lengths = [len(tokenizer(render_prompt(r, task.catalog, template, hybrid),
                                 add_special_tokens=False)["input_ids"]) for r in requests]
        for row in ("Benign", "BadRec", "P-Scanner"):
            # behind P-Scanner the prompts lose the flagged candidates: counted whole (a bound)
            phases.append(prefill_phase(f"{row}: answering", f"{row}: answering {len(requests)} "
                                        f"{what}", lengths, cfg.batch_size, body, head, answer_length))
    # the scanner: rounds of balanced samples, each scored after its fine-tune; the prompts
    # are counted without their triggers (a lower bound), Eq. 4's expected 'Yes' share
    scanner_plan = plan_of(plan.defense.config)
    template_scan = load_prompt("recguard_pscanner", SCAN_PROMPT)
    titles = benign_pool(seed, scanner_plan.rounds * scanner_plan.n_items + scanner_plan.n_heldout)
    encoded = [scan_tokenizer(p, add_special_tokens=False)["input_ids"]
               for p in scan_prompts(scan_tokenizer, template_scan, titles)]
    prompt_lengths = [len(ids) for ids in encoded]
    batch, n = scanner_plan.train.batch_size, scanner_plan.n_items
    for t in range(scanner_plan.rounds):
        n_yes = round(n * 2 / 3)                      # Eq. 4: l ~ U{0, 1, 2}; l > 0 is 'Yes'
        labels = ["Yes"] * n_yes + ["No"] * (n - n_yes)
        order = balanced_order(labels, np.random.default_rng([seed, t]))
        lengths = [prompt_lengths[t * n + i] + 2 for i in order]   # the answer, the end token
        tokens, per_step = training_tokens(lengths, batch)
        phases.append(Phase("p-scanner: training", f"p-scanner: round {t + 1} fine-tuning "
                            f"({len(order)} samples, steps of {batch})", tokens,
                            2 * 2 * body * tokens + 2 * 2 * head * len(order), per_step))
    shared = _shared_prefix(encoded)                 # the chat header and the instruction
    scored = sum(prompt_lengths) - shared * len(prompt_lengths)
    per_title = scored // len(prompt_lengths)        # scored in batches of 8 after the head
    phases.append(Phase("p-scanner: training", "p-scanner: scoring its rounds and held-out titles",
                        scored, 2 * body * scored, 8 * per_title))
    scan_titles = sorted({r.title(i, task.catalog) for rs in (task.test, triggered) for r in rs
                          for i in r.candidates})
    scan_tokens = sum(len(scan_tokenizer(p, add_special_tokens=False)["input_ids"]) - shared
                      for p in scan_prompts(scan_tokenizer, template_scan, scan_titles))
    per_title = scan_tokens // len(scan_titles)
    phases.append(Phase("p-scanner: scanning", f"p-scanner: scanning {len(scan_titles)} titles",
                        scan_tokens, 2 * body * scan_tokens,
                        plan.defense.config.scan_batch * per_title))
    return phases, model


def gemm_rate(m: int, k: int, n: int, repeats: int = 20) -> float:
    """GFLOP/s of an (m x k) @ (k x n) float32 product, the best of three timings."""
    import torch

    a, b = torch.randn(m, k), torch.randn(n, k)
    for _ in range(3):
        a @ b.t()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b.t()
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * m * k * n / best / 1e9


def best_rate(m: int, model) -> float:
    """The fastest GFLOP/s of the LM's projection shapes (hidden -> hidden, hidden ->
    intermediate, intermediate -> hidden) at ``m`` rows: an upper bound on its products'."""
    hidden, inner = model.config.hidden_size, model.config.intermediate_size
    return max(gemm_rate(m, hidden, hidden), gemm_rate(m, hidden, inner), gemm_rate(m, inner, hidden))


def decode_step_seconds(model, batch: int = 8, context: int = 176) -> float:
    """Seconds of one greedy decoding step at ``batch`` rows after a ``context``-token prompt."""
    import torch

    ids = torch.randint(100, 40000, (batch, context))
    mask = torch.ones_like(ids)
    options = dict(do_sample=False, temperature=None, top_k=None, top_p=None,
                   pad_token_id=0, attention_mask=mask)

    def run(n):
        with torch.no_grad():
            start = time.perf_counter()
            model.generate(input_ids=ids, max_new_tokens=n, min_new_tokens=n, **options)
            return time.perf_counter() - start

    run(2)
    return min((run(17) - run(1)) / 16 for _ in range(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    phases, model = cell_phases(args.seed)
    rates = {m: best_rate(m, model) for m in sorted({p.rows for p in phases})}
    decode = decode_step_seconds(model)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, seed {args.seed}")
    print(f"one decoding step at a batch of 8 after 176 tokens: {decode * 1000:.0f} ms")
    print("| phase | tokens | TFLOP | rows per product | GFLOP/s there | decoding steps | "
          "least seconds |\n|---|---|---|---|---|---|---|")
    groups: dict[str, float] = {}
    for p in phases:
        least = p.flops / (rates[p.rows] * 1e9) + p.decode_steps * decode
        groups[p.group] = groups.get(p.group, 0.0) + least
        print(f"| {p.name} | {p.tokens} | {p.flops / 1e12:.2f} | {p.rows} | {rates[p.rows]:.0f} | "
              f"{p.decode_steps or ''} | {least:.0f} |")
    print(f"| all counted phases | {sum(p.tokens for p in phases)} | "
          f"{sum(p.flops for p in phases) / 1e12:.1f} | | | {sum(p.decode_steps for p in phases)} | "
          f"{sum(groups.values()):.0f} |")
    print("\n| phase, as `llm_main_cell.py` names it | least seconds |\n|---|---|")
    for group, least in groups.items():
        print(f"| {group} | {least:.0f} |")


if __name__ == "__main__":
    main()
