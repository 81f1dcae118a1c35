"""Sparse user-item graph machinery shared by graph CF models and defenses.

- `normalised_adjacency`: the bipartite graph of the training interactions over the
  stacked index space (users first, then items) as a sparse torch tensor, normalised
  symmetrically, D^-1/2 A D^-1/2 (LightGCN, Eq. 8-9), or by rows, D^-1 A (RGCF's
  denoised graph), with optional per-interaction edge weights (RGCF's reliabilities).
- `propagate`: the LightGCN layer mean, (1/(K+1)) sum_k Â^k E.
- `mean_aggregator`: a sparse (rows x columns) matrix whose row r averages the
  columns it is linked to: Agg = mean over a node's neighbours (GraphRfi's GCN).
- `edge_cosine`: cos(e_u, e_i) of every given (u, i) pair (RGCF's reliability).

Torch is imported inside the functions, so `recguard list` stays fast.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from recguard.data.interactions import Interactions


def unique_pairs(train: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (user, item) pairs of ``train``, sorted by user then item."""
    pairs = np.unique(train.user.astype(np.int64) * train.n_items + train.item)
    return pairs // train.n_items, pairs % train.n_items


def normalised_adjacency(train: Interactions, n_users: int, edge_weight: np.ndarray | None = None,
                         norm: Literal["symmetric", "row"] = "symmetric", device=None):
    """The user-item graph (users first, then items) as a sparse torch tensor.

    ``edge_weight`` None: A holds 1 per distinct (user, item) pair, normalised to
    D^-1/2 A D^-1/2 (``symmetric``, LightGCN) or D^-1 A (``row``), D the degrees.
    ``edge_weight``: one weight per row of ``train`` (duplicates of a pair keep the
    first), entered in both directions; D then sums the weights (RGCF's soft
    denoising normalises the pruned reliabilities by D^-1). A zero weight removes the
    edge. ``device``: where the tensor goes (None: the CPU)."""
    import torch

    if edge_weight is None:
        users, items = unique_pairs(train)
        weight = None
    else:
        keys = train.user.astype(np.int64) * train.n_items + train.item
        _, first = np.unique(keys, return_index=True)
        weight = np.asarray(edge_weight, dtype=np.float64)[first]
        keep = weight > 0
        users, items, weight = train.user[first][keep], train.item[first][keep], weight[keep]
    items = items + n_users
    rows = np.concatenate([users, items]).astype(np.int64)
    cols = np.concatenate([items, users]).astype(np.int64)
    size = n_users + train.n_items
    values = np.ones(len(rows)) if weight is None else np.concatenate([weight, weight])
    degree = np.bincount(rows, weights=values, minlength=size).astype(np.float64)
    floor = 1.0 if weight is None else 1e-12   # unweighted: LightGCN's max(degree, 1)
    if norm == "symmetric":
        scale = 1.0 / np.sqrt(np.maximum(degree, floor))
        values = values * scale[rows] * scale[cols]
    else:
        values = values / np.maximum(degree, floor)[rows]
    index = torch.as_tensor(np.stack([rows, cols]))
    graph = torch.sparse_coo_tensor(index, torch.as_tensor(values.astype(np.float32)), (size, size),
                                    check_invariants=True).coalesce()
    return graph if device is None else graph.to(device)


def propagate(graph, user_emb, item_emb, layers: int):
    """LightGCN's final embeddings: the mean of layers 0..K of E^(k+1) = Â E^(k), split
    into (users, items)."""
    import torch

    layer = torch.cat([user_emb, item_emb])
    total = layer
    for _ in range(layers):
        layer = torch.sparse.mm(graph, layer)
        total = total + layer
    final = total / (layers + 1)
    return final[:user_emb.shape[0]], final[user_emb.shape[0]:]


def mean_aggregator(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int, device=None):
    """Sparse (n_rows, n_cols) M with M[r, c] = 1/deg(r) for each link (r, c) (a repeated
    link counts as often as it appears): M @ X averages X over each row's links; a row
    without links gives zeros."""
    import torch

    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    degree = np.bincount(rows, minlength=n_rows).astype(np.float64)
    values = (1.0 / np.maximum(degree, 1.0))[rows].astype(np.float32)
    matrix = torch.sparse_coo_tensor(torch.as_tensor(np.stack([rows, cols])), torch.as_tensor(values),
                                     (n_rows, n_cols), check_invariants=True).coalesce()
    return matrix if device is None else matrix.to(device)


def edge_cosine(user_emb: np.ndarray, item_emb: np.ndarray, users: np.ndarray,
                items: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """cos(e_u, e_i) for each pair (users[k], items[k])."""
    u = np.asarray(user_emb, dtype=np.float64)
    i = np.asarray(item_emb, dtype=np.float64)
    u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), eps)
    i = i / np.maximum(np.linalg.norm(i, axis=1, keepdims=True), eps)
    return np.einsum("kd,kd->k", u[users], i[items])
