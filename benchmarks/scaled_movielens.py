"""Write an ML-1M-sized dataset grown from ML-100K, in ML-1M's format, for scale benchmarks.

MovieLens-1M cannot be downloaded here, so the attacks' memory and time at its size
are measured on this stand-in (``recguard eval --dataset ml-1m --data-path FOLDER``):

- items: ML-1M's 3706 = ML-100K's 1682 plus 2024 copies of originals drawn uniformly
  (an original's copies share its title with a " (copy k)" suffix);
- users: ML-1M's 6040; synthetic user u starts from ML-100K user u mod 943's ratings,
  each item swapped for one of the original's copies or kept, uniformly among them;
- profile lengths grow by the ratio of the two datasets' mean profile lengths
  (ML-1M 165.6, ML-100K 106.0), with extra items drawn by popularity and rated from
  that item's own rating distribution, so the total is close to ML-1M's 1,000,209;
- timestamps: the source rating's, plus the user's index in seconds (extras: the
  source user's last timestamp plus one second each).

    python benchmarks/scaled_movielens.py OUT_FOLDER [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ML1M_USERS, ML1M_ITEMS, ML1M_RATINGS = 6040, 3706, 1_000_209


def grow(seed: int = 0):
    """(user, item, rating, timestamp, titles) arrays of the scaled dataset (0-based ids)."""
    from recguard.data.builtin_datasets import load_ml100k

    base = load_ml100k(None)
    rng = np.random.default_rng(seed)
    n_copies = ML1M_ITEMS - base.n_items
    copy_of = rng.integers(base.n_items, size=n_copies)             # copy c is of original copy_of[c]
    variants = [[i] for i in range(base.n_items)]                   # an original and its copies
    titles = list(base.item_text)
    for c, original in enumerate(copy_of):
        variants[original].append(base.n_items + c)
        titles.append(f"{base.item_text[original]} (copy {len(variants[original]) - 1})")

    growth = (ML1M_RATINGS / ML1M_USERS) / (len(base) / base.n_users)
    popularity = base.item_counts() / len(base)
    by_item = [base.rating[base.item == i] for i in range(base.n_items)]
    order = np.argsort(base.user, kind="stable")
    starts = np.searchsorted(base.user[order], np.arange(base.n_users + 1))
    users, items, ratings, stamps = [], [], [], []
    for u in range(ML1M_USERS):
        rows = order[starts[u % base.n_users]:starts[u % base.n_users + 1]]
        own = np.array([rng.choice(variants[i]) for i in base.item[rows]])
        extra_n = int(round(len(rows) * growth)) - len(rows)
        pool = np.setdiff1d(np.arange(base.n_items), base.item[rows])
        p = popularity[pool] / popularity[pool].sum()
        extra_src = rng.choice(pool, size=min(extra_n, len(pool)), replace=False, p=p)
        extra = np.array([rng.choice(variants[i]) for i in extra_src], dtype=np.int64)
        extra_ratings = np.array([rng.choice(by_item[i]) for i in extra_src])
        last = base.timestamp[rows].max()
        users.append(np.full(len(own) + len(extra), u))
        items.append(np.concatenate([own, extra]))
        ratings.append(np.concatenate([base.rating[rows], extra_ratings]))
        stamps.append(np.concatenate([base.timestamp[rows] + u, last + 1 + np.arange(len(extra))]))
    user, item = np.concatenate(users), np.concatenate(items)
    # an item swapped to the same copy twice in one profile would be a duplicate rating
    _, first = np.unique(user.astype(np.int64) * ML1M_ITEMS + item, return_index=True)
    keep = np.sort(first)
    return (user[keep], item[keep], np.concatenate(ratings)[keep], np.concatenate(stamps)[keep], titles)


def write(folder: Path, seed: int = 0) -> Path:
    from recguard.files import atomic_write_text

    user, item, rating, stamp, titles = grow(seed)
    lines = [f"{u + 1}::{i + 1}::{int(r)}::{int(t)}" for u, i, r, t in zip(user, item, rating, stamp)]
    atomic_write_text(folder / "ratings.dat", "\n".join(lines) + "\n")
    movies = [f"{i + 1}::{t.replace('::', ':')}::Drama" for i, t in enumerate(titles)]
    atomic_write_text(folder / "movies.dat", "\n".join(movies) + "\n")
    print(f"{folder}: {len(set(user.tolist()))} users, {len(set(item.tolist()))} items, {len(user)} ratings")
    return folder


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write(args.out, args.seed)
