"""GRU4Rec: a recurrent (GRU) encoder of the item sequence (Hidasi et al., ICLR 2016).

Item embeddings go through ``n_layers`` stacked GRU layers (dropout between layers,
as ``nn.GRU(dropout=...)`` in the LoRec code); the output at each step passes a
linear layer with tanh (the LoRec code's ``h2o`` and ``final_act='tanh'``) and is
dotted with the item embeddings. Sequences are run packed, so the padding before a
user's first item never reaches the hidden state (the LoRec code resets the state at
padding to the same effect). Xavier-uniform initialisation of the embedding and
linear weights as in the GRU4Rec code, PyTorch's default for the GRU.

Departures from the GRU4Rec paper: one sequence per user trained with
the LoRec loss (BCE with one sampled negative per position, `common`) instead of
session-parallel mini-batches with in-batch negatives and the TOP1/BPR ranking
losses; two layers (the LoRec code) where the paper found one layer best.
"""

from __future__ import annotations

from dataclasses import dataclass

from recguard import param

from recguard_sequential.common import SequentialBackbone, SequentialConfig


@dataclass
class GRU4RecConfig(SequentialConfig):
    dim: int = param(64, "embedding and GRU hidden size (LoRec's code: 512; the GRU4Rec paper: "
                         "100 units; 64 fits a CPU)", low=1)
    n_layers: int = param(2, "stacked GRU layers (LoRec's code: 2; the GRU4Rec paper: 1 was best)",
                          low=1)
    dropout: float = param(0.5, "dropout between GRU layers (LoRec's code: 0.5)",
                           low=0, high=1, open_high=True)


class GRU4RecBackbone(SequentialBackbone):
    name = "gru4rec"
    summary = "GRU4Rec: stacked GRU over each user's item sequence, next-item BCE"
    paper = ("Hidasi et al., Session-based Recommendations with Recurrent Neural Networks, "
             "ICLR 2016; LoRec (Zhang et al., 2024)")
    Config = GRU4RecConfig

    def build(self, cfg: GRU4RecConfig):
        from torch import nn

        return nn.ModuleDict({
            "gru": nn.GRU(cfg.dim, cfg.dim, num_layers=cfg.n_layers, batch_first=True,
                          dropout=cfg.dropout if cfg.n_layers > 1 else 0.0),
            "out": nn.Linear(cfg.dim, cfg.dim)})

    def init_weight(self, weight) -> None:
        from torch import nn

        nn.init.xavier_uniform_(weight)

    @staticmethod
    def encode(net, emb, mask):
        import torch
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        batch, length, d = emb.shape
        lengths = mask.sum(1)
        steps = torch.arange(length, device=emb.device).unsqueeze(0)
        # left padding -> right padding (row b shifted left by its padding), and back after
        to_right = (steps + (length - lengths).unsqueeze(1)) % length
        to_left = (steps + lengths.unsqueeze(1)) % length
        right = emb.gather(1, to_right.unsqueeze(-1).expand(-1, -1, d))
        packed = pack_padded_sequence(right, lengths.clamp_min(1), batch_first=True,
                                      enforce_sorted=False)
        out, _ = net.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=length)
        out = torch.tanh(net.out(out))
        return out.gather(1, to_left.unsqueeze(-1).expand(-1, -1, out.shape[-1]))
