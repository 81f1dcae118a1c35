"""Prompt templates are package data of the plugins that read them, so a wheel install
runs the LLM cells (issue 16: `pip install .` could not read `prompts/` of the checkout)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from recguard.errors import RecguardError

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = {   # plugin folder -> (package, templates it reads)
    "recguard-llmrec": ("recguard_llmrec", ("llara.txt", "tallrec.txt")),
    "recguard-lorec": ("recguard_lorec", ("lorec_user.txt",)),
    "recguard-pscanner": ("recguard_pscanner", ("pscanner_scan.txt", "pscanner_agent.txt")),
    "recguard-backdoor-baselines": ("recguard_backdoor_baselines", ("paraphrase_title.txt", "cos_choose.txt",
                                                             "cos_yes_no.txt", "cos_judge.txt")),
}


def test_each_template_is_read_from_its_package():
    from recguard.kit.lm.prompts import load_prompt

    for package, names in PROMPTS.values():
        for name in names:
            assert "{" in load_prompt(package, name)        # a template with fields
    with pytest.raises(RecguardError, match="nothing.txt of recguard_llmrec cannot be read"):
        load_prompt("recguard_llmrec", "nothing.txt")


def test_no_template_is_read_from_the_checkout_root():
    assert not list((ROOT / "prompts").glob("*.txt")), "templates belong to their packages"


@pytest.mark.integration
def test_wheels_carry_the_templates(tmp_path):
    """Build each LLM plugin's wheel (no network: the installed setuptools) and look inside."""
    folders = [str(ROOT / "plugins" / folder) for folder in PROMPTS]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), *folders], check=True)
    for package, names in PROMPTS.values():
        wheel = next(tmp_path.glob(f"{package}-*.whl"))
        inside = set(zipfile.ZipFile(wheel).namelist())
        assert {f"{package}/prompts/{name}" for name in names} <= inside, wheel.name
