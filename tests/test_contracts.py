"""Contract checks over every registered component (parametrised over the registry)."""

import pytest

from recguard.plugins import get_host, reset_host
from recguard.testing import (check_attack, check_backbone, check_defense, check_llm_attack,
                              check_llm_backbone, check_llm_defense, check_metric)

reset_host()
HOST = get_host()


def entries(kind):
    return [pytest.param(entry.obj, id=entry.name) for entry in HOST.registry(kind)]


@pytest.mark.parametrize("cls", entries("backbone"))
def test_backbone_contract(cls, request):
    if cls.kind == "llm":
        check_llm_backbone(cls, request.getfixturevalue("tiny_llm"))
    else:
        check_backbone(cls)


@pytest.mark.parametrize("cls", entries("attack"))
def test_attack_contract(cls):
    if cls.backbone_kinds == frozenset({"llm"}):
        check_llm_attack(cls)
    else:
        check_attack(cls)


@pytest.mark.parametrize("cls", entries("defense"))
def test_defense_contract(cls, request):
    overrides = {"llm": request.getfixturevalue("tiny_llm")} if "llm" in cls.Config.__dataclass_fields__ else {}
    if cls.name == "none":
        assert not cls.stages
        return
    if cls.backbone_kinds == frozenset({"llm"}):
        check_llm_defense(cls, request.getfixturevalue("tiny_llm"))
        return
    backbones = [b for b in HOST.backbones.iter_objects()
                 if b.kind in cls.backbone_kinds and set(cls.needs) <= set(b.offers)]
    assert backbones, f"defense {cls.name} has no registered backbone to run on"
    check_defense(cls, backbones[0], overrides)


@pytest.mark.parametrize("cls", entries("metric"))
def test_metric_contract(cls):
    check_metric(cls)


@pytest.mark.parametrize("spec", [pytest.param(e.obj, id=e.name) for e in HOST.datasets])
def test_dataset_specs_describe_themselves(spec):
    assert spec.name and spec.summary and callable(spec.load)


@pytest.mark.parametrize("protocol", [pytest.param(e.obj, id=e.name) for e in HOST.protocols])
def test_protocols_name_their_paper_and_known_metrics(protocol):
    from recguard.protocols import parse_metric

    assert protocol.paper
    for spec in protocol.metrics:
        name = parse_metric(spec)[0] if protocol.task_kind == "ranking" else spec
        assert protocol.task_kind in HOST.metrics.get(name).task_kinds
