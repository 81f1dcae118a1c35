"""SASRec: causal multi-head self-attention over the item sequence (Kang & McAuley, ICDM 2018).

The encoder of the LoRec code (``backbone_model/SASrec``): item embedding plus a
learned position embedding, LayerNorm and dropout, then ``n_layers`` blocks of
multi-head self-attention (no bias in the Q/K/V/output projections) and a ReLU
feed-forward layer of width 4d, each with dropout, a residual connection and a
post-LayerNorm (eps 1e-6); attention is causal and ignores padding. Xavier-normal
initialisation of linear and embedding weights, zero biases. The SASRec paper
scales the item embeddings by sqrt(d), uses pre-LayerNorm blocks with a d-wide
feed-forward layer and one head; recguard follows the LoRec code instead, since
the LoRec protocol's numbers come from it. Training and scoring: `common`.
"""

from __future__ import annotations

from dataclasses import dataclass

from recguard import param

from recguard_sequential.common import SequentialBackbone, SequentialConfig


@dataclass
class SASRecConfig(SequentialConfig):
    dim: int = param(64, "hidden size d (LoRec's code: 512 for its runs; 64 is the usual ID-based "
                         "size and fits a CPU; the SASRec paper uses 50)", low=1)
    n_layers: int = param(2, "self-attention blocks (LoRec's code, SASRec paper: 2)", low=1)
    dropout: float = param(0.1, "dropout rate (LoRec's code: 0.1)", low=0, high=1, open_high=True)
    n_heads: int = param(2, "attention heads; must divide dim (LoRec's code: 2)", low=1)

    def __post_init__(self):
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not a multiple of n_heads {self.n_heads}")


class SASRecBackbone(SequentialBackbone):
    name = "sasrec"
    summary = ("SASRec: causal self-attention over each user's item sequence; ID or text "
               "(frozen sentence encoder over titles) item embeddings")
    paper = "Kang & McAuley, Self-Attentive Sequential Recommendation, ICDM 2018; LoRec (Zhang et al., 2024)"
    Config = SASRecConfig

    def build(self, cfg: SASRecConfig):
        import torch
        from torch import nn

        d = cfg.dim

        def block():
            return nn.ModuleDict({
                "q": nn.Linear(d, d, bias=False), "k": nn.Linear(d, d, bias=False),
                "v": nn.Linear(d, d, bias=False), "o": nn.Linear(d, d, bias=False),
                "norm1": nn.LayerNorm(d, eps=1e-6),
                "ff1": nn.Linear(d, 4 * d), "ff2": nn.Linear(4 * d, d),
                "norm2": nn.LayerNorm(d, eps=1e-6)})

        net = nn.ModuleDict({"position": nn.Embedding(cfg.max_len, d),
                             "norm": nn.LayerNorm(d, eps=1e-6),
                             "blocks": nn.ModuleList([block() for _ in range(cfg.n_layers)])})
        net.heads, net.p = cfg.n_heads, cfg.dropout
        net.register_buffer("causal", torch.ones(cfg.max_len, cfg.max_len, dtype=torch.bool).tril(),
                            persistent=False)
        return net

    def init_weight(self, weight) -> None:
        from torch import nn

        nn.init.xavier_normal_(weight)

    @staticmethod
    def encode(net, emb, mask):
        import torch
        from torch.nn import functional as F

        batch, length, d = emb.shape
        heads, p = net.heads, (net.p if net.training else 0.0)
        x = F.dropout(net.norm(emb + net.position.weight[:length]), p, net.training)
        # query t sees keys <= t that are items; a padding query sees nothing (uniform, masked later)
        allowed = net.causal[:length, :length].unsqueeze(0) & mask.unsqueeze(1)
        bias = torch.zeros(allowed.shape, dtype=emb.dtype, device=emb.device)
        bias = bias.masked_fill(~allowed, -1e9).unsqueeze(1)

        def split(t):
            return t.view(batch, length, heads, d // heads).transpose(1, 2)

        for blk in net.blocks:
            att = F.scaled_dot_product_attention(split(blk.q(x)), split(blk.k(x)), split(blk.v(x)),
                                                 attn_mask=bias, dropout_p=p)
            att = att.transpose(1, 2).reshape(batch, length, d)
            x = blk.norm1(x + F.dropout(blk.o(att), p, net.training))
            ff = blk.ff2(F.relu(blk.ff1(x)))
            x = blk.norm2(x + F.dropout(ff, p, net.training))
        return x
