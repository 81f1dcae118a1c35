"""recguard.kit.lm.sft and .generation on the tiny random Llama: LoRA fine-tuning through TRL
and the batched queries."""

import numpy as np
import pytest

from recguard.errors import RecguardError
from recguard.kit.lm import generation, sft
from recguard.kit.lm.models import load_causal_lm


@pytest.fixture
def lm(tiny_llm):
    return load_causal_lm(tiny_llm)


def test_fine_tune_learns_the_completion_and_saves_a_checked_adapter(lm, tmp_path):
    model, tok = lm
    prompts = ["Q: is it red? A:", "Q: is it blue? A:"] * 4
    completions = [" Yes", " No"] * 4
    before = generation.completion_logprob(model, tok, prompts[:2], completions[:2])
    steps = []
    lora = sft.LoraSettings(r=8, alpha=16, target_modules=("q_proj", "v_proj", "up_proj", "down_proj"))
    tuned = sft.fine_tune(model, tok, prompts, completions, lora=lora,
                          train=sft.TrainSettings(epochs=20, lr=3e-2, batch_size=4), seed=0,
                          progress=lambda d, t: steps.append((d, t)), adapter_dir=tmp_path / "adapter")
    after = generation.completion_logprob(tuned, tok, prompts[:2], completions[:2])
    assert (after > before + 0.3).all(), (before, after)
    assert steps and steps[-1][0] == steps[-1][1]
    assert sft.check_adapter(tmp_path / "adapter") > 0


def test_an_adapter_without_weights_is_refused(tmp_path):
    from safetensors.numpy import save_file

    save_file({}, str(tmp_path / "adapter_model.safetensors"))
    with pytest.raises(RecguardError, match="holds no weights"):
        sft.check_adapter(tmp_path)


def test_mismatched_or_empty_training_data_is_one_line_error(lm):
    model, tok = lm
    with pytest.raises(RecguardError, match="as many prompts as completions"):
        sft.fine_tune(model, tok, ["a"], [], lora=sft.LoraSettings(), train=sft.TrainSettings(), seed=0)


def test_queries_are_batch_independent(lm):
    model, tok = lm
    prompts = ["short", "a much longer prompt than the first one"]
    one = np.concatenate([generation.yes_probability(model, tok, [p]) for p in prompts])
    both = generation.yes_probability(model, tok, prompts, batch_size=2)
    assert np.allclose(one, both, atol=1e-5) and ((both > 0) & (both < 1)).all()
    mean = generation.completion_logprob(model, tok, prompts, [" yes", " no"], batch_size=2)
    total = generation.completion_logprob(model, tok, prompts, [" yes", " no"], reduce="sum")
    assert (total <= mean + 1e-6).all() and (mean < 0).all()
    assert (generation.perplexity(model, tok, ["hello world"]) > 1).all()
    greedy = generation.generate(model, tok, prompts, max_new_tokens=4, batch_size=2)
    assert greedy == [generation.generate(model, tok, [p], max_new_tokens=4)[0] for p in prompts]
    sampled = generation.generate(model, tok, prompts, max_new_tokens=4, sample=True, seed=3)
    assert sampled == generation.generate(model, tok, prompts, max_new_tokens=4, sample=True, seed=3)


def test_a_shared_prompt_prefix_is_read_once_with_the_same_answers(lm, monkeypatch):
    """Prompts from one template: the shared head runs once and its keys and values serve
    every batch (of two sizes here: 3 and the remainder 1); P(Yes) is what the whole
    prompts give, read in one pass each."""
    model, tok = lm
    head = "Decide whether the following item title carries a noise trigger of any kind:"
    prompts = [f"{head} {title}\n" for title in ("Heat", "Toy Story (1995)", "Fargo xq zz", "Up")]
    assert generation._shared_prefix([tok(p)["input_ids"] for p in prompts]) >= \
        generation.MIN_SHARED_PREFIX
    alone = np.concatenate([generation.yes_probability(model, tok, [p]) for p in prompts])
    calls = []
    forward = type(model).forward

    def counting(self, *args, input_ids=None, **kwargs):
        calls.append(tuple(input_ids.shape))
        return forward(self, *args, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(type(model), "forward", counting)
    shared = generation.yes_probability(model, tok, prompts, batch_size=3)
    assert np.allclose(shared, alone, atol=1e-5)
    n_prefix = generation._shared_prefix([tok(p, add_special_tokens=False)["input_ids"] for p in prompts])
    prefix_runs = [shape for shape in calls if shape[1] == n_prefix]
    assert sorted(prefix_runs) == [(1, n_prefix), (3, n_prefix)]   # once per batch size
    assert all(shape[1] < n_prefix for shape in calls if shape not in prefix_runs)
    unshared = generation.yes_probability(model, tok, prompts, batch_size=3, share_prefix=False)
    assert np.allclose(unshared, alone, atol=1e-5)


def test_checkpointing_is_turned_off_under_either_name():
    """transformers 5.25 names the option activation_checkpointing; 5.17 knows only
    gradient_checkpointing and raises a TypeError on the new name."""
    import dataclasses

    from trl import SFTConfig

    from recguard.kit.lm.sft import checkpointing_off

    @dataclasses.dataclass
    class Older:
        gradient_checkpointing: bool = True

    assert checkpointing_off(Older) == {"gradient_checkpointing": False}
    (installed,) = checkpointing_off(SFTConfig)     # whichever name this trl knows
    assert installed in {f.name for f in dataclasses.fields(SFTConfig)}
    Older(**checkpointing_off(Older))     # accepted by the class it was made for


def test_a_warmup_share_is_passed_under_the_name_the_installed_version_takes():
    import dataclasses

    from trl import SFTConfig

    from recguard.kit.lm.sft import warmup_share

    @dataclasses.dataclass
    class Four:            # transformers 4.x: an integer warmup_steps and a warmup_ratio
        warmup_steps: int = 0
        warmup_ratio: float = 0.0

    @dataclasses.dataclass
    class Five:            # transformers 5: a float warmup_steps, below 1 a share
        warmup_steps: float = 0

    assert warmup_share(Four, 0.1) == {"warmup_ratio": 0.1}
    assert warmup_share(Five, 0.1) == {"warmup_steps": 0.1}
    (installed,) = warmup_share(SFTConfig, 0.1)
    assert installed in {f.name for f in dataclasses.fields(SFTConfig)}


def test_completion_loss_is_the_models_own_loss_on_the_completion_tokens(lm):
    """The SFT loss projects to the vocabulary only where a completion token is predicted;
    it equals the causal-LM loss of the whole sequences' logits under the same labels,
    with and without the Trainer's token count."""
    import torch

    model, tok = lm
    rows = [tok("a b c d e f")["input_ids"], tok("g h")["input_ids"]]
    labels = [[-100] * (len(rows[0]) - 2) + rows[0][-2:], [-100] + rows[1][1:]]
    ids, mask, targets = generation.pad_batch(tok, rows, "cpu", side="right", labels=labels)
    assert ids.shape[1] == generation.LENGTH_MULTIPLE          # padded to a shape bucket
    whole = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    nll = torch.nn.functional.cross_entropy(whole.reshape(-1, whole.shape[-1]).float(),
                                            targets[:, 1:].reshape(-1), ignore_index=-100,
                                            reduction="sum")
    n_labelled = int((targets[:, 1:] != -100).sum())
    inputs = {"input_ids": ids, "attention_mask": mask, "labels": targets}
    loss = float(sft.completion_loss(model, inputs).detach())
    assert loss == pytest.approx(float(nll.detach()) / n_labelled, rel=1e-5)
    assert float(sft.completion_loss(model, inputs, num_items_in_batch=10).detach()) == pytest.approx(
        float(nll.detach()) / 10, rel=1e-5)
    assert "labels" in inputs                                    # the caller's batch is untouched

    class WithoutLogitsToKeep(torch.nn.Module):                  # a model that cannot cut
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, use_cache=False):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    assert float(sft.completion_loss(WithoutLogitsToKeep(model), inputs).detach()) == pytest.approx(
        float(nll.detach()) / n_labelled, rel=1e-5)


def test_the_head_runs_in_float32_on_a_bf16_model_and_only_inside_the_context(tiny_llm):
    """A bf16 head rounds logits to steps of up to 0.125 (P(Yes) then comes in coarse steps);
    under `float32_head` the logits are the float32 product of the head's input and weights."""
    import torch

    from recguard.kit.lm.models import compute_context, float32_head

    model, tok = load_causal_lm(tiny_llm, dtype="bfloat16", device="cpu")
    head = model.get_output_embeddings()
    seen = []
    capture = head.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    ids = torch.tensor([tok("a title to score")["input_ids"]])
    with torch.no_grad():
        assert model(input_ids=ids).logits.dtype == torch.bfloat16
        with float32_head(model):
            logits = model(input_ids=ids).logits
        with compute_context(model):
            assert model(input_ids=ids).logits.dtype == torch.float32
        assert model(input_ids=ids).logits.dtype == torch.bfloat16     # the hook is gone again
    with float32_head(model), compute_context(model):   # nested (the agent's loss): one hook
        assert len(head._forward_hooks) == 2          # the capture and ours
    capture.remove()
    expected = seen[1].double() @ head.weight.double().T
    assert logits.dtype == torch.float32
    assert torch.allclose(logits.double(), expected, atol=1e-4)
    # float32 weights under bf16 autocast (dtype=mixed): the head leaves autocast too
    mixed, _ = load_causal_lm(tiny_llm, dtype="mixed", device="cpu")
    with torch.no_grad(), compute_context(mixed):
        assert mixed(input_ids=ids).logits.dtype == torch.float32


def test_completion_logprob_projects_only_the_completion_positions_with_the_same_result(lm):
    """Completions of different lengths in one left-padded batch: each row's log-likelihood
    is what the whole sequence's logits give."""
    import torch

    model, tok = lm
    prompts, completions = ["a short prompt", "x"], [" yes", " a longer completion here"]
    got = generation.completion_logprob(model, tok, prompts, completions, batch_size=2, reduce="sum")
    for prompt, completion, value in zip(prompts, completions, got):
        (full, n_prompt), = generation._encode_pairs(tok, [prompt], [completion])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([full])).logits.float(), -1)[0]
        expected = sum(float(logp[t - 1, full[t]]) for t in range(max(n_prompt, 1), len(full)))
        assert value == pytest.approx(expected, rel=1e-5)   # padding moves float32 sums a little


def test_query_batches_go_shortest_first_and_answers_come_back_in_the_order_given(lm):
    batches = list(generation._sorted_batches([5, 1, 9, 1, 3], 2))
    assert batches == [([1, 3], 2), ([4, 0], 4), ([2], 5)]
    model, tok = lm
    prompts = ["a much longer prompt than all the others here", "x", "a middling prompt", "yz",
               "another long prompt of some length"]
    one = np.concatenate([generation.yes_probability(model, tok, [p]) for p in prompts])
    np.testing.assert_allclose(generation.yes_probability(model, tok, prompts, batch_size=2,
                                                          share_prefix=False), one, atol=1e-5)
    completions = [" yes", " no", " maybe", " a", " b"]
    alone = np.concatenate([generation.completion_logprob(model, tok, [p], [c])
                            for p, c in zip(prompts, completions)])
    np.testing.assert_allclose(generation.completion_logprob(model, tok, prompts, completions,
                                                             batch_size=2), alone, atol=1e-4)
    greedy = generation.generate(model, tok, prompts, max_new_tokens=3, batch_size=2)
    assert greedy == [generation.generate(model, tok, [p], max_new_tokens=3)[0] for p in prompts]


def test_the_float32_head_is_cast_once_per_context_and_again_when_its_weights_change(tiny_llm):
    """generate() calls the head once per token: the float32 copy made at the second call is
    reused, dropped when the weights change in place; a trained head still gets gradients."""
    import torch

    from recguard.kit.lm.models import float32_head

    model, tok = load_causal_lm(tiny_llm, dtype="bfloat16", device="cpu")
    head = model.get_output_embeddings()
    ids = torch.tensor([tok("a title to score")["input_ids"]])
    casts = []
    real_float = torch.Tensor.float

    def counting_float(tensor):
        if tensor.dim() == 2 and tensor.shape[1] == head.weight.shape[1]:
            casts.append(tensor.shape)
        return real_float(tensor)

    with torch.no_grad(), float32_head(model):
        torch.Tensor.float = counting_float
        try:
            first = model(input_ids=ids).logits
            second = model(input_ids=ids).logits
            n_after_two = len(casts)
            assert n_after_two > 0
            third = model(input_ids=ids).logits
            assert len(casts) == n_after_two              # the kept copy, no new cast
            head.weight.mul_(2)                           # changed in place: cast again
            doubled = model(input_ids=ids).logits
        finally:
            torch.Tensor.float = real_float
        head.weight.div_(2)
    assert torch.equal(first, second) and torch.equal(second, third)
    torch.testing.assert_close(doubled, 2 * first, rtol=1e-3, atol=1e-3)
    head.weight.requires_grad_(True)
    with float32_head(model):
        model(input_ids=ids).logits.sum().backward()
        model(input_ids=ids).logits.sum().backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
