"""Training samples and test requests of the LLM protocols, fixed by seed.

``choose`` (LLaRA): each user's interactions in time order; the last item is the
test target, the second-to-last is held out (validation), and every earlier
position t >= 1 is a training window (the up to ``history_len`` items before t
-> item t). Candidates: the true item plus ``n_candidates - 1`` items the user
never interacted with, drawn once per seed and shuffled (LLaRA's code redraws
them at every access, even at test time; recguard fixes them).

``yes_no`` (TALLRec's code): each user's ratings in time order cut into windows
of ``history_len`` items followed by a target; liked = rating > ``like_above``.
All samples are ordered by the target's time, the last 10,000 kept and split
8:1:1 in that order; the few-shot training set draws ``n_train_samples`` from the
first part (half among likes, half among dislikes with ``balanced_shots``), the test
set ``n_test_samples`` from the last.

Fake users (an attack's, marked in ``Interactions.is_fake``) give one sample
each, from their whole profile: the last row is the target, the rows before it
the history; titles they see differently (a trigger) come from
``Interactions.meta[USER_ITEM_TEXT]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from recguard.data.interactions import Interactions
from recguard.data.splits import leave_one_out
from recguard.errors import RecguardError
from recguard.llm_contracts import Request

USER_ITEM_TEXT = "user_item_text"
TALLREC_POOL, TALLREC_SHARES = 10_000, (0.8, 0.1, 0.1)
_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")
_ARTICLE = re.compile(r"^(?P<rest>.*), (?P<article>The|A|An)$")


@dataclass
class LLMTask:
    """One seed's samples: ``interactions`` is what the recommender trains on (LLaRA's
    SASRec included); ``train`` its genuine samples; ``test`` the requests to answer."""

    catalog: list[str]
    interactions: Interactions
    train: list[Request]
    test: list[Request]


def llara_title(title: str) -> str:
    """'Usual Suspects, The (1995)' -> 'The Usual Suspects' (LLaRA's title cleaning)."""
    title = _YEAR.sub("", title.strip())
    m = _ARTICLE.match(title)
    return f"{m.group('article')} {m.group('rest')}" if m else title


def catalog_of(data: Interactions, style: str) -> list[str]:
    if data.item_text is None:
        raise RecguardError(f"dataset {data.name!r} has no item titles; LLM recommenders read titles")
    titles = [str(t) for t in data.item_text]
    return [llara_title(t) for t in titles] if style == "llara" else titles


def _sequences(data: Interactions) -> list[np.ndarray]:
    """Each user's row indices in time order (ties kept in file order)."""
    indptr, order = data.by_user()
    return [order[indptr[u]:indptr[u + 1]] for u in range(data.n_users)]


def _streams(seed: int, salt: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for the training draws and the test draws: the test requests
    (users and candidate sets) do not move when the number of training samples changes."""
    return (np.random.default_rng([seed, salt, 1]), np.random.default_rng([seed, salt, 2]))


def _draw(n_total: int, n_wanted: int, rng: np.random.Generator) -> np.ndarray:
    if n_wanted <= 0 or n_wanted >= n_total:
        return np.arange(n_total)
    return np.sort(rng.choice(n_total, size=n_wanted, replace=False))


def _draw_balanced(liked: np.ndarray, n_wanted: int, rng: np.random.Generator) -> np.ndarray:
    """``n_wanted`` (> 0, as the protocol checks) indices, half where ``liked`` is true and half
    where it is false (the odd one among the likes), in index order."""
    halves = []
    for label, want, pool in (("liked", (n_wanted + 1) // 2, np.flatnonzero(liked)),
                              ("disliked", n_wanted // 2, np.flatnonzero(~liked))):
        if len(pool) < want:
            raise RecguardError(f"balanced_shots: {n_wanted} shots need {want} {label} samples; "
                                f"the training split has {len(pool)}")
        halves.append(rng.choice(pool, size=want, replace=False))
    return np.sort(np.concatenate(halves))


def _candidates(target: int, seen: set[int], n_items: int, n: int, rng: np.random.Generator) -> tuple[int, ...]:
    pool = np.setdiff1d(np.arange(n_items), np.fromiter(seen | {target}, dtype=np.int64))
    if len(pool) < n - 1:
        raise RecguardError(f"{n} candidates need {n - 1} items a user never saw; only {len(pool)}")
    chosen = np.append(rng.choice(pool, size=n - 1, replace=False), target)
    rng.shuffle(chosen)
    return tuple(int(i) for i in chosen)


def _user_titles(data: Interactions, user: int) -> dict[int, str]:
    return dict(data.meta.get(USER_ITEM_TEXT, {}).get(user, {}))


def _request(data: Interactions, protocol, user: int, rows: np.ndarray, seen: set[int],
             rng: np.random.Generator) -> Request:
    """The sample whose target is the last of ``rows`` and whose history the rows before it."""
    items, ratings = data.item[rows], data.rating[rows]
    history = tuple(int(i) for i in items[:-1][-protocol.history_len:])
    target = int(items[-1])
    titles = _user_titles(data, user)
    triggered = frozenset(i for i in titles if i in set(history) | {target})
    if protocol.llm_task == "choose":
        return Request(user, history, _candidates(target, seen, data.n_items, protocol.n_candidates, rng),
                       target, titles=titles, triggered=triggered)
    liked = ratings[:-1][-protocol.history_len:] > protocol.like_above
    h = np.asarray(history, dtype=np.int64)
    return Request(user, tuple(int(i) for i in h[liked]), (target,), target,
                   disliked=tuple(int(i) for i in h[~liked]),
                   label=bool(ratings[-1] > protocol.like_above), titles=titles, triggered=triggered)


def build_task(data: Interactions, protocol, seed: int) -> LLMTask:
    """The genuine samples and test requests of ``data`` under an LLM protocol."""
    if protocol.llm_task == "choose":
        return _choose_task(data, protocol, seed)
    if protocol.llm_task == "yes_no":
        return _yes_no_task(data, protocol, seed)
    raise RecguardError(f"protocol {protocol.name!r} is not an LLM protocol (llm_task is none)")


def _choose_task(data: Interactions, protocol, seed: int) -> LLMTask:
    train_rng, test_rng = _streams(seed, 0x11A7A)
    sequences = _sequences(data)
    windows = [(u, t) for u, rows in enumerate(sequences) for t in range(1, len(rows) - 2)]
    picked = _draw(len(windows), protocol.n_train_samples, train_rng)
    train = []
    for j in picked:
        u, t = windows[j]
        rows = sequences[u]
        train.append(_request(data, protocol, u, rows[max(0, t - protocol.history_len):t + 1],
                              set(data.item[rows].tolist()), train_rng))
    users = [u for u, rows in enumerate(sequences) if len(rows) >= 3]
    test = []
    for u in (users[i] for i in _draw(len(users), protocol.n_test_samples, test_rng)):
        rows = sequences[u]
        test.append(_request(data, protocol, u, rows[-protocol.history_len - 1:],
                             set(data.item[rows].tolist()), test_rng))
    return LLMTask(catalog_of(data, protocol.title_style), leave_one_out(data).train, train, test)


def _yes_no_task(data: Interactions, protocol, seed: int) -> LLMTask:
    train_rng, test_rng = _streams(seed, 0x7A11)
    sequences = _sequences(data)
    windows = [(u, rows[t - protocol.history_len:t + 1]) for u, rows in enumerate(sequences)
               for t in range(protocol.history_len, len(rows))]
    if len(windows) < 10:
        raise RecguardError(f"only {len(windows)} TALLRec samples of {protocol.history_len} items + 1; "
                            f"lower history_len or use a larger dataset")
    when = np.array([data.timestamp[rows[-1]] for _, rows in windows])
    ordered = [windows[i] for i in np.argsort(when, kind="stable")][-TALLREC_POOL:]
    n_train = int(len(ordered) * TALLREC_SHARES[0])
    n_valid = int(len(ordered) * TALLREC_SHARES[1])
    train_pool, test_pool = ordered[:n_train], ordered[n_train + n_valid:]
    if protocol.balanced_shots:
        liked = np.array([data.rating[rows[-1]] > protocol.like_above for _, rows in train_pool])
        picked = _draw_balanced(liked, protocol.n_train_samples, train_rng)
    else:
        picked = _draw(len(train_pool), protocol.n_train_samples, train_rng)
    shots = [train_pool[i] for i in picked]
    tests = [test_pool[i] for i in _draw(len(test_pool), protocol.n_test_samples, test_rng)]
    train = [_request(data, protocol, u, rows, set(), train_rng) for u, rows in shots]
    test = [_request(data, protocol, u, rows, set(), test_rng) for u, rows in tests]
    return LLMTask(catalog_of(data, protocol.title_style), data, train, test)


def fake_samples(attacked: Interactions, protocol, seed: int) -> list[Request]:
    """One training sample per fake user: its whole profile, the last row the target."""
    rng = np.random.default_rng([seed, 0xFA4E])
    sequences = _sequences(attacked)
    out = []
    for u in np.flatnonzero(attacked.is_fake):
        rows = sequences[u]
        if len(rows) < 2:
            raise RecguardError(f"fake user {attacked.user_ids[u]} has {len(rows)} interactions; an "
                                f"LLM sample needs a history and a target")
        out.append(_request(attacked, protocol, int(u), rows,
                            set(attacked.item[rows].tolist()), rng))
    return out
