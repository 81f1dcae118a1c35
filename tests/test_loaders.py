"""Dataset loaders, the prepared-data cache and the built-in dataset specs."""

import importlib.util
import zipfile

import numpy as np
import pytest

from recguard.contracts import Config
from recguard.data import cache, loaders
from recguard.data.builtin_datasets import CSVConfig, DATASETS
from recguard.errors import RecguardError

SPECS = {spec.name: spec for spec in DATASETS}


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def zip_folder(folder, archive):
    with zipfile.ZipFile(archive, "w") as z:
        for file in sorted(folder.iterdir()):
            z.write(file, f"{folder.name}/{file.name}")
    return archive


def raises(call, *fragments):
    with pytest.raises(RecguardError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


@pytest.fixture
def grouplens(tmp_path):
    folder = tmp_path / "ml-100k"
    write(folder / "u.data", "1\t10\t5\t100\n1\t11\t3\t101\n2\t10\t4\t102\n")
    write(folder / "u.item", "10|Toy Story (1995)|01-Jan-1995||x|0|1\n11|Caf\xe9 (1990)|||y\n",
          "latin-1")
    write(folder / "ua.base", "not read\n")
    return folder


# ---------------------------------------------------------------- formats


def test_grouplens_folder_and_zip(tmp_path, grouplens):
    data = loaders.load_ml100k(grouplens)
    assert (data.n_users, data.n_items, len(data), data.name) == (2, 2, 3, "ml-100k")
    assert data.feedback == "explicit" and data.rating_max == 5.0
    assert data.item_ids.tolist() == ["10", "11"]
    assert data.item_text.tolist() == ["Toy Story (1995)", "Caf\xe9 (1990)"]
    assert data.timestamp.tolist() == [100, 101, 102] and data.rating.tolist() == [5, 3, 4]
    archive = zip_folder(grouplens, tmp_path / "ml-100k.zip")
    assert loaders.load_ml100k(archive).fingerprint() == data.fingerprint()
    assert loaders.load_ml100k(tmp_path).fingerprint() == data.fingerprint()  # the parent folder


def test_ml1m_folder_and_zip(tmp_path):
    folder = tmp_path / "ml-1m"
    write(folder / "ratings.dat", "1::1193::5::978300760\r\n2::661::3::978302109\r\n1::661::4::978300000\r\n")
    write(folder / "movies.dat", "1193::One Flew Over (1975)::Drama\n661::Am\xe9lie (1996)::Comedy\n",
          "latin-1")
    data = loaders.load_ml1m(folder)
    assert (data.n_users, data.n_items, len(data), data.name) == (2, 2, 3, "ml-1m")
    assert dict(zip(data.item_ids, data.item_text)) == {"1193": "One Flew Over (1975)",
                                                       "661": "Am\xe9lie (1996)"}
    archive = zip_folder(folder, tmp_path / "ml-1m.zip")
    assert loaders.load_ml1m(archive).fingerprint() == data.fingerprint()


def test_atomic_folder_and_inter_file(tmp_path):
    folder = tmp_path / "toy"
    write(folder / "toy.inter", "item_id:token\tuser_id:token\trating:float\n7\ta\t4\n8\tb\t2\n")
    write(folder / "toy.item", "item_id:token\ttitle:token_seq\trelease_year:token\n"
                               "7\tSeven\t1995\n8\tEight\t\n")
    data = loaders.load_atomic(folder)
    assert data.name == "toy" and data.user_ids.tolist() == ["a", "b"]
    assert data.item_text.tolist() == ["Seven (1995)", "Eight"]
    assert data.timestamp.tolist() == [0, 1] and data.feedback == "explicit"
    assert loaders.load_atomic(folder / "toy.inter").fingerprint() == data.fingerprint()
    implicit = write(tmp_path / "imp" / "imp.inter", "user_id:token\titem_id:token\n1\t2\n")
    assert loaders.load_atomic(implicit).feedback == "implicit"


def test_ml100k_path_may_be_atomic(tmp_path):
    folder = tmp_path / "ml-100k"
    write(folder / "ml-100k.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                    "196\t242\t3\t881250949.0\n")
    write(folder / "ml-100k.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\n"
                                   "242\tKolya\t1996\n")
    data = loaders.load_ml100k(folder)
    assert data.item_text.tolist() == ["Kolya (1996)"] and data.timestamp.tolist() == [881250949]


@pytest.mark.parametrize("name, text, feedback, rating_max, stamps", [
    ("a.csv", "user,item,rating,timestamp\n1,2,5,10\n1,3,4,11\n2,2,1,12\n", "explicit", 5, [10, 11, 12]),
    ("b.csv", "userId,movieId,rating\n1,2,5\n1,3,4\n2,2,1\n", "explicit", 5, [0, 1, 2]),
    ("c.csv", "1,2,5\n\n1,3,4\n2,2,1\n", "explicit", 5, [0, 1, 2]),
    ("d.csv", "u1 , i2\nu1 , i3\nu2 , i2\n", "implicit", 1, [0, 1, 2]),
    ("e.tsv", "user_id\titem_id\n1\t2\n1\t3\n2\t2\n", "implicit", 1, [0, 1, 2]),
    ("f.tab", "1\t2\t3.5\t5\n1\t3\t1\t6\n2\t2\t1\t7.0\n", "explicit", 3.5, [5, 6, 7]),
])
def test_csv_variants(tmp_path, name, text, feedback, rating_max, stamps):
    data = loaders.load_csv(write(tmp_path / name, text))
    assert (data.n_users, data.n_items, len(data), data.feedback) == (2, 2, 3, feedback)
    assert data.timestamp.tolist() == stamps and data.rating_max == rating_max
    assert data.name == name.split(".")[0] and data.item_text is None


def test_csv_delimiter_option_and_item_text(tmp_path):
    ratings = write(tmp_path / "r.txt", "1;a;2\n2;b;4\n")
    items = write(tmp_path / "items.csv", 'item,text\na,Alpha\nb,"Beta, the second",extra\n')
    data = loaders.load_csv(ratings, items, delimiter=";")
    assert data.item_text.tolist() == ["Alpha", "Beta, the second"] and data.rating_max == 4.0
    tsv_items = write(tmp_path / "items.tsv", "a\tAlpha\n")  # no header; b has no text
    assert loaders.load_csv(ratings, tsv_items, "semicolon").item_text.tolist() == ["Alpha", ""]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("text, fragment", [
    ("user,item,rating\n1,10,5\n2,11,abc\n", "ratings.csv:3: rating 'abc' is not a number"),
    ("1,10,5\n1,11,4\n1,12,3\n1,13,2\n1,14,1\n\n2\n", "ratings.csv:7: expected 2 to 4 fields, got 1"),
    ("1,10,5\n1,11,4,5,6\n", "ratings.csv:2: expected 2 to 4 fields, got 5"),
    ("1,10\n2,11,4\n", "ratings.csv:2: expected 2 fields as on line 1, got 3"),
    ("1,10,5,100\n2,11,4,later\n", "ratings.csv:2: timestamp 'later' is not a number"),
    ("1,10,5\n2,11,nan\n", "ratings.csv:2: rating 'nan' is not a finite number"),
    ("1,10\n,11\n", "ratings.csv:2: empty user id"),
    ("", "ratings.csv: the file is empty"),
    ("\n  \n", "ratings.csv: the file is empty"),
    ("user,item\n", "ratings.csv: no data rows after the header"),
])
def test_malformed_csv_names_file_and_line(tmp_path, text, fragment):
    path = write(tmp_path / "ratings.csv", text)
    raises(lambda: loaders.load_csv(path), fragment)


def test_malformed_movielens_and_atomic(tmp_path, grouplens):
    write(grouplens / "u.data", "1\t10\t5\t100\n1\t11\t3\n")
    raises(lambda: loaders.load_ml100k(grouplens), "u.data:2: expected 4 fields, got 3")
    archive = zip_folder(grouplens, tmp_path / "bad.zip")
    raises(lambda: loaders.load_ml100k(archive), "bad.zip/ml-100k/u.data:2:")
    write(tmp_path / "ml-1m" / "ratings.dat", "1::2::5::9\n1::3::x::9\n")
    raises(lambda: loaders.load_ml1m(tmp_path / "ml-1m"), "ratings.dat:2: rating 'x' is not a number")
    write(tmp_path / "at" / "at.inter", "user_id:token\trating:float\n1\t5\n")
    raises(lambda: loaders.load_atomic(tmp_path / "at"), "at.inter:1: the header has no item_id")
    write(tmp_path / "at" / "at.inter", "user_id:token\titem_id:token\n1\t2\n1\t2\t3\n")
    raises(lambda: loaders.load_atomic(tmp_path / "at"), "at.inter:3: expected 1 to 2 fields, got 3")
    write(tmp_path / "items.csv", "a\n")
    write(tmp_path / "r.csv", "1,a\n")
    raises(lambda: loaders.load_csv(tmp_path / "r.csv", tmp_path / "items.csv"), "items.csv:1:")


def test_missing_and_wrong_paths(tmp_path):
    missing = tmp_path / "nope"
    for call in (lambda: loaders.load_ml100k(missing), lambda: loaders.load_ml1m(missing),
                 lambda: loaders.load_atomic(missing), lambda: loaders.load_csv(missing),
                 lambda: SPECS["csv"].load(missing, CSVConfig())):
        raises(call, f"dataset path '{missing}' does not exist")
    raises(lambda: loaders.load_ml100k(tmp_path), "neither GroupLens ml-100k files")
    raises(lambda: loaders.load_ml1m(tmp_path), "has no ratings.dat")
    raises(lambda: loaders.load_atomic(tmp_path), "has no RecBole .inter file")
    raises(lambda: loaders.load_csv(tmp_path), "is a folder")
    raises(lambda: loaders.load_ml1m(write(tmp_path / "x.zip", "not a zip")), "not a readable zip")
    write(tmp_path / "r.csv", "1,2\n")
    raises(lambda: SPECS["csv"].load(tmp_path / "r.csv", CSVConfig(item_text=str(missing))),
           "does not exist")


@pytest.mark.parametrize("name, contents", [("ml-1m", "ratings.dat"), ("atomic", ".inter"),
                                            ("csv", "user,item")])
def test_specs_that_need_a_path(name, contents):
    spec = SPECS[name]
    assert spec.needs_path
    raises(lambda: spec.load(None, spec.Config()), f"dataset '{name}' needs --data-path PATH",
           contents)


# ---------------------------------------------------------------- cache


def test_cache_round_trips_every_field(tmp_path, monkeypatch, grouplens):
    monkeypatch.setenv("RECGUARD_CACHE", str(tmp_path / "cache"))
    built = loaders.load_ml100k(grouplens)
    key = {"test": "round trip"}
    cache.cached_interactions(key, lambda: built)
    again = cache.cached_interactions(key, lambda: pytest.fail("the cache was not used"))
    for name in ("user", "item", "rating", "timestamp", "user_ids", "item_ids", "item_text"):
        got, want = getattr(again, name), getattr(built, name)
        assert got.dtype == want.dtype and got.tolist() == want.tolist(), name
    for name in ("n_users", "n_items", "feedback", "rating_max", "name"):
        assert getattr(again, name) == getattr(built, name), name
    implicit = loaders.load_csv(write(tmp_path / "r.csv", "1,2\n"))
    cache.cached_interactions({"test": "no text"}, lambda: implicit)
    stored = cache.cached_interactions({"test": "no text"}, lambda: pytest.fail("not cached"))
    assert stored.item_text is None and stored.feedback == "implicit" and stored.rating_max == 1.0
    with np.load(cache.cache_path(key), allow_pickle=False) as npz:  # nothing pickled
        assert all(npz[name].dtype != object for name in npz.files)


def test_cache_reuses_invalidates_and_rebuilds(tmp_path, monkeypatch):
    monkeypatch.setenv("RECGUARD_CACHE", str(tmp_path / "cache"))
    calls = []
    real = loaders.load_csv
    monkeypatch.setattr(loaders, "load_csv", lambda *a: calls.append(a) or real(*a))
    path = write(tmp_path / "r.csv", "1,10,5\n2,11,3\n")
    first = SPECS["csv"].load(path, CSVConfig())
    again = SPECS["csv"].load(path, CSVConfig())
    assert len(calls) == 1 and again.fingerprint() == first.fingerprint()
    stored = list((tmp_path / "cache" / "data").glob("*.npz"))
    assert len(stored) == 1
    stored[0].write_bytes(b"corrupt")  # a corrupt entry is rebuilt silently
    assert SPECS["csv"].load(path, CSVConfig()).fingerprint() == first.fingerprint()
    assert len(calls) == 2
    SPECS["csv"].load(path, CSVConfig(delimiter=","))  # other options: another entry
    assert len(calls) == 3
    write(path, "1,10,5\n2,11,3\n3,12,4\n")  # a changed file: another entry
    assert len(SPECS["csv"].load(path, CSVConfig())) == 3 and len(calls) == 4
    assert len(list((tmp_path / "cache" / "data").glob("*.npz"))) == 3


def test_file_signature_of_a_folder_sees_every_file(tmp_path, grouplens):
    before = cache.file_signature(grouplens)
    assert before["files"] == 3 and before["path"] == str(grouplens.resolve())
    assert cache.file_signature(grouplens) == before
    write(grouplens / "extra.txt", "x")
    assert cache.file_signature(grouplens) != before
    single = cache.file_signature(grouplens / "u.data")
    assert set(single) == {"path", "size", "mtime_ns"}


# ---------------------------------------------------------------- the embedded MovieLens-100K


@pytest.mark.skipif(importlib.util.find_spec("recbole") is None, reason="recbole wheel not installed")
def test_embedded_ml100k(tmp_path, monkeypatch):
    monkeypatch.setenv("RECGUARD_CACHE", str(tmp_path / "cache"))
    data = SPECS["ml-100k"].load(None, Config())
    assert (data.n_users, data.n_items, len(data)) == (943, 1682, 100000)
    assert data.name == "ml-100k" and data.feedback == "explicit" and data.rating_max == 5.0
    titles = dict(zip(data.item_ids, data.item_text))
    assert titles["1"] == "Toy Story (1995)" and all(titles.values())
    assert data.rating.min() == 1 and data.timestamp.min() > 8e8
    assert SPECS["ml-100k"].load(None, Config()).fingerprint() == data.fingerprint()  # cached


def test_without_recbole_the_default_says_how_to_get_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "recbole" else real(name, *a))
    raises(lambda: SPECS["ml-100k"].load(None, Config()), "pip install --no-deps recbole",
           "--data-path")
