from dataclasses import dataclass
from typing import Literal

import pytest

from recguard.config import build_config, describe_fields, param, parse_options
from recguard.contracts import Config
from recguard.errors import OptionError, RecguardError


@dataclass
class Example(Config):
    epochs: int = param(10, "epochs", low=1)
    rate: float = param(0.5, "a share", low=0, high=1, open_low=True, open_high=True)
    name: str = param("x", "a name")
    flag: bool = param(False, "a switch")
    maybe: float | None = param(None, "optional")
    mode: Literal["a", "b"] = param("a", "a choice")
    sizes: tuple[int, ...] = param((1, 2), "several")


def test_defaults_and_typed_overrides():
    cfg = build_config(Example, {"epochs": "3", "rate": "0.25", "flag": "yes", "maybe": "1e-3",
                                 "mode": "b", "sizes": "4,5,6"}, "test")
    assert (cfg.epochs, cfg.rate, cfg.flag, cfg.maybe, cfg.mode, cfg.sizes) == (3, 0.25, True, 1e-3, "b", (4, 5, 6))
    assert build_config(Example, {"maybe": "none"}, "test").maybe is None


@pytest.mark.parametrize("overrides, fragment", [
    ({"epoch": "3"}, "unknown test option 'epoch' (did you mean 'epochs'?)"),
    ({"epochs": "three"}, "expected int, got 'three'"),
    ({"epochs": "0"}, "outside [1, inf]"),
    ({"rate": "1"}, "outside (0, 1)"),
    ({"flag": "maybe"}, "expected bool"),
    ({"mode": "c"}, "is not one of 'a', 'b'"),
])
def test_bad_options_name_the_problem(overrides, fragment):
    with pytest.raises(RecguardError) as err:
        build_config(Example, overrides, "test")
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)
    # the error carries what it is about, so that a sweep spec can point at the option's line
    assert isinstance(err.value, OptionError)
    assert (err.value.role, err.value.key) == ("test", next(iter(overrides)))


def test_parse_options():
    assert parse_options(["a=1", "b = x=y"], "attack") == {"a": "1", "b": "x=y"}
    with pytest.raises(RecguardError, match="not of the form key=value"):
        parse_options(["novalue"], "attack")


def test_describe_fields_lists_help():
    rows = {name: (default, help) for name, _, default, help in describe_fields(Example)}
    assert rows["epochs"] == (10, "epochs")
