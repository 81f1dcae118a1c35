"""FMLP-Rec: filter-enhanced MLP over the item sequence (Zhou et al., WWW 2022).

Self-attention is replaced by a learnable global filter: each block takes the FFT of
the sequence along the time axis (``torch.fft.rfft``), multiplies every frequency and
channel by a learnable complex weight, transforms back (``torch.fft.irfft``), applies
dropout, a residual connection and LayerNorm, then a GELU feed-forward layer of width
4d with dropout, residual and LayerNorm (eps 1e-12). The input is item embedding plus
a learned position embedding, LayerNorm and dropout. As in the paper the filter acts
on the whole padded window of ``max_len`` positions (there is no attention mask);
outputs at padding are zeroed. Initialisation: normal with std 0.02 for linear and
embedding weights, 0.02 * N(0, 1) for the filters, zero biases (both codes).
"""

from __future__ import annotations

from dataclasses import dataclass

from recguard import param

from recguard_sequential.common import SequentialBackbone, SequentialConfig


@dataclass
class FMLPRecConfig(SequentialConfig):
    dim: int = param(64, "hidden size d (the FMLP-Rec paper: 64; LoRec's code: 512)", low=1)
    n_layers: int = param(2, "filter-enhanced blocks (FMLP-Rec paper and LoRec's code: 2)", low=1)
    dropout: float = param(0.5, "dropout rate (LoRec's code and FMLP-Rec's code: 0.5)",
                           low=0, high=1, open_high=True)
    batch_size: int = param(256, "users (sequences) per batch (FMLP-Rec paper: 256; LoRec's code: "
                                 "512)", low=1)
    init_std: float = param(0.02, "std of the normal initialisation (both codes: 0.02)", low=0)


class FMLPRecBackbone(SequentialBackbone):
    name = "fmlprec"
    summary = "FMLP-Rec: learnable frequency-domain filters (FFT) and MLPs instead of self-attention"
    paper = ("Zhou et al., Filter-enhanced MLP is All You Need for Sequential Recommendation, "
             "WWW 2022; LoRec (Zhang et al., 2024)")
    Config = FMLPRecConfig

    def build(self, cfg: FMLPRecConfig):
        import torch
        from torch import nn

        d = cfg.dim

        def block():
            filt = nn.Module()
            filt.weight = nn.Parameter(torch.randn(cfg.max_len // 2 + 1, d, 2) * cfg.init_std)
            return nn.ModuleDict({
                "filter": filt, "norm1": nn.LayerNorm(d, eps=1e-12),
                "ff1": nn.Linear(d, 4 * d), "ff2": nn.Linear(4 * d, d),
                "norm2": nn.LayerNorm(d, eps=1e-12)})

        net = nn.ModuleDict({"position": nn.Embedding(cfg.max_len, d),
                             "norm": nn.LayerNorm(d, eps=1e-12),
                             "blocks": nn.ModuleList([block() for _ in range(cfg.n_layers)])})
        net.p = cfg.dropout
        return net

    def init_weight(self, weight) -> None:
        from torch import nn

        nn.init.normal_(weight, 0.0, self.config.init_std)

    @staticmethod
    def encode(net, emb, mask):
        import torch
        from torch.nn import functional as F

        length = emb.shape[1]
        p = net.p if net.training else 0.0
        x = F.dropout(net.norm(emb + net.position.weight[:length]), p, net.training)
        for blk in net.blocks:
            spectrum = torch.fft.rfft(x, dim=1, norm="ortho")
            filtered = torch.fft.irfft(spectrum * torch.view_as_complex(blk.filter.weight),
                                       n=length, dim=1, norm="ortho")
            x = blk.norm1(x + F.dropout(filtered, p, net.training))
            ff = blk.ff2(F.gelu(blk.ff1(x)))
            x = blk.norm2(x + F.dropout(ff, p, net.training))
        return x
