import importlib.util
import zipfile

import numpy as np
import pytest

from recguard.components import Config
from recguard.data import cache, loaders
from recguard.data.builtin_datasets import DATASETS, CSVConfig
from recguard.errors import RecguardError

SPECS = {spec.name: spec for spec in DATASETS}


def write_grouplens(folder):
    folder.mkdir()
    (folder / "u.data").write_text("1\t10\t5\t100\n1\t11\t3\t101\n2\t10\t4\t102\n")
    (folder / "u.item").write_bytes("10|Toy Story (1995)|x\n11|Caf\xe9 (1990)|y\n".encode("latin-1"))
    return folder


def test_grouplens_folder_and_zip(tmp_path):
    folder = write_grouplens(tmp_path / "ml-100k")
    data = loaders.load_ml100k(folder)
    assert (data.n_users, data.n_items, len(data)) == (2, 2, 3)
    assert data.feedback == "explicit" and data.rating_max == 5.0
    assert list(data.item_text) == ["Toy Story (1995)", "Caf\xe9 (1990)"]
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("u.data", "u.item"):
            z.write(folder / name, f"ml-100k/{name}")
    assert loaders.load_ml100k(archive).fingerprint() == data.fingerprint()


def test_ml1m_folder_and_zip(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::1193::5::978300760\n2::661::3::978302109\n")
    (folder / "movies.dat").write_text("1193::One Flew Over (1975)::Drama\n661::James (1996)::Animation\n")
    data = loaders.load_ml1m(folder)
    assert len(data) == 2 and "One Flew Over (1975)" in list(data.item_text)
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(folder / "ratings.dat", "ml-1m/ratings.dat")
    assert len(loaders.load_ml1m(archive)) == 2


def test_atomic_files(tmp_path):
    (tmp_path / "toy.inter").write_text("item_id:token\tuser_id:token\trating:float\n7\ta\t4\n8\tb\t2\n")
    (tmp_path / "toy.item").write_text("item_id:token\ttitle:token_seq\n7\tSeven\n8\tEight\n")
    data = loaders.load_atomic(tmp_path)
    assert data.name == "toy" and sorted(data.item_text) == ["Eight", "Seven"]
    assert data.user_ids.tolist() == ["a", "b"] and data.timestamp.tolist() == [0, 1]


@pytest.mark.parametrize("text, suffix, feedback", [
    ("user,item,rating,timestamp\n1,2,5,10\n1,3,4,11\n2,2,1,12\n", ".csv", "explicit"),
    ("1,2,5\n1,3,4\n2,2,1\n", ".csv", "explicit"),
    ("1\t2\n1\t3\n2\t2\n", ".tsv", "implicit"),
])
def test_csv_variants(tmp_path, text, suffix, feedback):
    path = tmp_path / f"data{suffix}"
    path.write_text(text)
    data = loaders.load_csv(path)
    assert (data.n_users, data.n_items, len(data), data.feedback) == (2, 2, 3, feedback)


def test_csv_with_item_text(tmp_path):
    (tmp_path / "r.csv").write_text("1,a\n2,b\n")
    (tmp_path / "items.csv").write_text("item,text\na,Alpha\nb,Beta\n")
    data = loaders.load_csv(tmp_path / "r.csv", tmp_path / "items.csv")
    assert list(data.item_text) == ["Alpha", "Beta"]


@pytest.mark.parametrize("text, fragment", [
    ("user,item,rating\n1,10,5\n2,11,abc\n", "ratings.csv:3: rating 'abc' is not a number"),
    ("1,10,5\n2\n", "ratings.csv:2: expected 2 to 4 fields, got 1"),
    ("1,10\n2,11,4\n", "ratings.csv:2: rows have different numbers of fields"),
    ("", "ratings.csv: no data rows"),
])
def test_malformed_lines_name_file_and_line(tmp_path, text, fragment):
    path = tmp_path / "ratings.csv"
    path.write_text(text)
    with pytest.raises(RecguardError) as err:
        loaders.load_csv(path)
    assert fragment in str(err.value)


def test_missing_path_and_wrong_folder(tmp_path):
    with pytest.raises(RecguardError, match="does not exist"):
        loaders.load_ml1m(tmp_path / "nope")
    with pytest.raises(RecguardError, match="neither GroupLens"):
        loaders.load_ml100k(tmp_path)
    with pytest.raises(RecguardError, match="needs --data-path"):
        SPECS["ml-1m"].load(None, Config())


def test_cache_reuses_and_invalidates(tmp_path, monkeypatch):
    monkeypatch.setenv("RECGUARD_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "r.csv"
    path.write_text("1,10,5\n2,11,3\n")
    first = SPECS["csv"].load(path, CSVConfig())
    stored = list((tmp_path / "cache" / "data").glob("*.npz"))
    assert len(stored) == 1
    calls = []
    monkeypatch.setattr(loaders, "load_csv", lambda *a, **k: calls.append(1))
    again = SPECS["csv"].load(path, CSVConfig())
    assert not calls and again.fingerprint() == first.fingerprint()
    assert np.array_equal(again.user_ids, first.user_ids)
    stored[0].write_bytes(b"corrupt")  # a corrupt entry is rebuilt
    monkeypatch.undo()
    monkeypatch.setenv("RECGUARD_CACHE", str(tmp_path / "cache"))
    assert SPECS["csv"].load(path, CSVConfig()).fingerprint() == first.fingerprint()
    path.write_text("1,10,5\n2,11,3\n3,12,4\n")  # a changed file is a new entry
    assert len(SPECS["csv"].load(path, CSVConfig())) == 3


@pytest.mark.skipif(importlib.util.find_spec("recbole") is None, reason="recbole wheel not installed")
def test_embedded_ml100k():
    data = SPECS["ml-100k"].load(None, Config())
    assert (data.n_users, data.n_items, len(data)) == (943, 1682, 100000)
    assert "Toy Story (1995)" in set(data.item_text)
    assert data.rating.min() == 1 and data.rating.max() == 5
