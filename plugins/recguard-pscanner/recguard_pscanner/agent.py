"""The trigger augmentation agent P_Phi: rewrites initial triggers (Eq. 5), learns from the scanner (Eq. 8).

P_Phi is a causal LM with a LoRA adapter. `rewrite` samples t-hat = P_Phi(t-bar)
from the rewrite prompt (``prompts/pscanner_agent.txt`` of this package). `update` takes a few
gradient steps on Eq. 8, sum_i U_i * L(t-bar_i -> t-hat_i), with U = +1 where the
scanner was wrong (more of those triggers) and -1 where it was right (fewer).

Eq. 8 as written is unbounded below: raising the NLL of the -1 rewrites without
limit wrecks the agent's language. We keep it stable by (i) dividing the sum by the
number of rewrites (a mean, so the step size does not grow with n_items), (ii)
clamping each -1 rewrite's per-token NLL at ``max_nll`` (beyond it the term is
constant: no gradient pushes further), (iii) a fixed, small number of steps with
gradient-norm clipping at 1. See `signed_lm_loss`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from recguard import release_memory
from recguard.kit.lm.generation import generate, pad_batch
from recguard.kit.lm.prompts import load_prompt
from recguard.kit.lm.sft import LoraSettings, labelled_logits, with_lora

from recguard_pscanner.triggers import InitialTrigger

AGENT_PROMPT = "pscanner_agent.txt"
MAX_WORDS = 12      # a rewrite is cut to this many words (sentence-level triggers are short)


def chat(tokenizer, text: str) -> str:
    """``text`` as the user turn of the tokenizer's chat template (instruct models expect
    it), ready for the assistant's answer; the text itself when there is no template.

    The system turn is empty: a template's default system prompt (SmolLM2's names the
    assistant, 16 tokens) would be most of each short scan prompt's cost. A template
    that takes no system turn gets the user turn alone."""
    if not getattr(tokenizer, "chat_template", None):
        return text + "\n"
    from jinja2.exceptions import TemplateError

    user = {"role": "user", "content": text}
    try:
        return tokenizer.apply_chat_template([{"role": "system", "content": ""}, user],
                                             tokenize=False, add_generation_prompt=True)
    except TemplateError:   # this template refuses a system turn
        return tokenizer.apply_chat_template([user], tokenize=False, add_generation_prompt=True)


def clean_rewrite(text: str) -> str:
    """The first line of a generation, quotes and trailing punctuation off, at most MAX_WORDS words."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = line.strip(" \"'`*").rstrip(".!")
    return " ".join(line.split()[:MAX_WORDS])


def signed_lm_loss(logits, targets, weights, max_nll: float):
    """Eq. 8 on one batch: mean_i U_i * L_i, L_i the mean NLL of sample i's labelled tokens.

    ``logits`` (B, P, V) at the positions that predict ``targets`` (B, P): ``logits[:, j]``
    predicts ``targets[:, j]``, a rewrite's token id where the loss applies and -100
    elsewhere; ``weights`` (B,) are U in {+1, -1}. A -1 sample's L_i is clamped at
    ``max_nll`` so the unlikelihood part stays bounded.
    """
    import torch

    mask = targets != -100
    nll = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets.clamp_min(0).reshape(-1),
        reduction="none").view(targets.shape)
    per_sample = (nll * mask).sum(-1) / mask.sum(-1).clamp_min(1)
    weights = weights.to(device=per_sample.device, dtype=per_sample.dtype)
    bounded = torch.where(weights < 0, per_sample.clamp(max=max_nll), per_sample)
    return (weights * bounded).mean()


MICRO_BATCH = 2      # rewrites per forward pass of an Eq. 8 step (the step's batch is larger)


@dataclass
class AgentSettings:
    model: str | None
    lora: LoraSettings
    temperature: float
    max_new_tokens: int
    steps: int
    lr: float
    max_nll: float
    batch_size: int
    device: str = "auto"
    dtype: str = "auto"


class TriggerAgent:
    """P_Phi: a causal LM with a LoRA adapter that stays across rounds."""

    def __init__(self, settings: AgentSettings, seed: int):
        import torch

        self.settings = settings
        torch.manual_seed(seed)
        self._build()
        self.template = load_prompt("recguard_pscanner", AGENT_PROMPT)
        self._parked = None

    def _build(self) -> None:
        """The base model with a fresh LoRA adapter, and its optimiser."""
        import torch

        from recguard.kit.lm.models import load_causal_lm

        s = self.settings
        base, self.tokenizer = load_causal_lm(s.model, dtype=s.dtype, device=s.device)
        self.model = with_lora(base, s.lora)
        self.model.eval()
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad], lr=s.lr)

    def park(self) -> None:
        """Let the model go while the scanner fine-tunes (a round's memory peak, where the
        victim, the scanner and the agent are held at once): the LoRA weights and the
        optimiser's state stay, and `unpark` reads the base weights again (the GGUF is
        converted once, so that is a load from the converted folder)."""
        from peft import get_peft_model_state_dict

        if self._parked is None:
            self._parked = ({k: v.detach() for k, v in get_peft_model_state_dict(self.model).items()},
                            self.optimizer.state_dict())
            self.model = self.optimizer = None
            release_memory()

    def unpark(self) -> None:
        """The model as `park` left it: the same base, LoRA weights and optimiser state. The
        global torch RNG is put back, so parking changes no later draw."""
        import torch
        from peft import set_peft_model_state_dict

        if self._parked is not None:
            lora, optimizer = self._parked
            rng = torch.random.get_rng_state()
            self._build()
            torch.random.set_rng_state(rng)
            set_peft_model_state_dict(self.model, lora)
            self.optimizer.load_state_dict(optimizer)
            self._parked = None

    def prompt(self, trigger: InitialTrigger) -> str:
        return chat(self.tokenizer, self.template.format(n_words=max(1, len(trigger.tokens)),
                                                         trigger=trigger.text))

    def rewrite(self, triggers: Sequence[InitialTrigger], seed: int) -> list[str]:
        """t-hat for each t-bar (l >= 1), sampled; an empty rewrite falls back to t-bar."""
        s = self.settings
        texts = generate(self.model, self.tokenizer, [self.prompt(t) for t in triggers],
                         max_new_tokens=s.max_new_tokens, batch_size=s.batch_size, sample=True,
                         temperature=s.temperature, seed=seed)
        return [clean_rewrite(text) or t.text for text, t in zip(texts, triggers)]

    def update(self, triggers: Sequence[InitialTrigger], rewrites: Sequence[str],
               u: np.ndarray, seed: int) -> list[float]:
        """Eq. 8: ``steps`` AdamW steps on `signed_lm_loss` over mini-batches of the rewrites,
        ``u`` the indicator U (+1 / -1) of each. Returns the loss of each step."""
        import torch

        s = self.settings
        rng = np.random.default_rng(seed)
        weights = np.asarray(u, dtype=np.float64)
        losses = []
        self.model.train()
        try:
            for _ in range(s.steps):
                pick = rng.choice(len(rewrites), size=min(s.batch_size, len(rewrites)), replace=False)
                self.optimizer.zero_grad()
                loss = 0.0
                # the batch's mean loss, accumulated over slices of MICRO_BATCH rewrites: the
                # same gradient as one pass, at a quarter of its activations (a batch of 8 in
                # one pass took the process up by 1.1 GB)
                for part in np.array_split(pick, -(-len(pick) // MICRO_BATCH)):
                    share = self.signed_loss([triggers[i] for i in part],
                                             [rewrites[i] for i in part],
                                             weights[part]) * (len(part) / len(pick))
                    share.backward()
                    loss += float(share.detach())
                torch.nn.utils.clip_grad_norm_(
                    [p for p in self.model.parameters() if p.requires_grad], 1.0)
                self.optimizer.step()
                losses.append(loss)
        finally:
            self.model.eval()
        return losses

    def signed_loss(self, triggers: Sequence[InitialTrigger], rewrites: Sequence[str],
                    u: np.ndarray):
        """`signed_lm_loss` of the rewrites given their prompts, with gradient. The
        vocabulary projection runs only where a rewrite token is predicted: the whole
        sequences' logits would cost half a GB at batch 8 and feed nothing."""
        import torch

        from recguard.kit.lm.models import compute_context

        ids, mask, labels = self._encode([self.prompt(t) for t in triggers], list(rewrites))
        with compute_context(self.model):
            logits, targets = labelled_logits(self.model, {"input_ids": ids, "attention_mask": mask},
                                              labels)
        return signed_lm_loss(logits, targets, torch.tensor(np.asarray(u, dtype=np.float64)),
                              self.settings.max_nll)

    def _encode(self, prompts: list[str], completions: list[str]):
        """Right-padded prompt + completion ids, their attention mask, and labels on the
        completion (and its end-of-turn token) only, on the agent's device."""
        tok = self.tokenizer
        rows, labels = [], []
        for prompt, completion in zip(prompts, completions):
            p = tok(prompt, add_special_tokens=False)["input_ids"]
            c = tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            rows.append(p + c)
            labels.append([-100] * len(p) + c)
        return pad_batch(tok, rows, self.model.device, side="right", labels=labels)
