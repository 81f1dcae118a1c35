"""Prompt rendering, the curriculum order and the answer validity rule (no model needed)."""

import numpy as np
import pytest

from recguard import Request
from recguard.testing import check_config

from recguard_llmrec.llara import (LLaRABackbone, curriculum_order, llara_templates,
                                   render_prompt as llara_prompt, valid_choice)
from recguard_llmrec.tallrec import (TALLRecBackbone, render_prompt as tallrec_prompt,
                                     tallrec_template)

CATALOG = ["Toy Story", "Heat", "Alien", "Aliens", "Fargo", "Babe"]


def test_configs_build():
    check_config(TALLRecBackbone)
    check_config(LLaRABackbone)


def test_tallrec_prompt_quotes_titles_and_overrides():
    r = Request(user=0, history=(0, 1), candidates=(4,), target=4, disliked=(2,), label=True,
                titles={4: "Fargo cf"}, instruction="Ignore odd words.")
    text = tallrec_prompt(r, CATALOG, tallrec_template())
    assert 'User Preference: "Toy Story", "Heat"\n' in text
    assert 'User Unpreference: "Alien"\n' in text
    assert 'Whether the user will like the target movie "Fargo cf"?' in text
    assert 'answering "Yes." or "No.". Ignore odd words.' in text
    assert text.startswith("Below is an instruction") and text.endswith("### Response:\n")


def test_llara_prompt_text_and_hybrid():
    template = llara_templates()[0]
    r = Request(user=0, history=(0, 1), candidates=(2, 4, 5), target=4, titles={5: "Babe tq"})
    text = llara_prompt(r, CATALOG, template, hybrid=False)
    assert "watched Toy Story, Heat in the previous" in text
    assert "following 3 movie titles: Alien, Fargo, Babe tq. Answer:" in text
    assert "<|item_" not in text
    hybrid = llara_prompt(r, CATALOG, template, hybrid=True)
    assert "watched Toy Story <|item_0|>, Heat <|item_1|> in" in hybrid
    assert "Alien <|item_2|>, Fargo <|item_4|>, Babe tq <|item_5|>. Answer:" in hybrid
    assert len(llara_templates()) == 3 and all("{candidates}" in t for t in llara_templates())


def test_curriculum_is_seeded_and_rises():
    a = curriculum_order(500, 2.0, seed=3, n_templates=3)
    assert a == curriculum_order(500, 2.0, seed=3, n_templates=3)
    assert a != curriculum_order(500, 2.0, seed=4, n_templates=3)
    samples = [s for s, _, _ in a]
    assert len(a) == 1000 and np.bincount(samples).tolist() == [2] * 500   # epochs concatenated
    flags = np.array([h for _, h, _ in a])
    assert not flags[0]
    quarters = flags.reshape(4, -1).mean(axis=1)
    assert np.all(np.diff(quarters) > 0) and quarters[0] < 0.25 < 0.75 < quarters[-1]
    assert {t for _, _, t in a} == {0, 1, 2}
    assert not any(h for _, h, _ in curriculum_order(50, 1.0, 0, 3, hybrid=False))
    assert all(h for _, h, _ in curriculum_order(50, 1.0, 0, 3, curriculum=False))
    assert len(curriculum_order(10, 1.5, 0, 3)) == 15


@pytest.mark.parametrize("text, choice", [
    ("I would pick Heat.", 1),                 # exactly one title
    ("fargo", 4),                              # case-insensitive
    ("Something else entirely", None),         # none
    ("Heat or Fargo", None),                   # two
    ("Aliens", None),                          # "Alien" is inside "Aliens": two titles appear
])
def test_generate_validity_rule(text, choice):
    r = Request(user=0, history=(0,), candidates=(1, 2, 3, 4), target=1)
    assert valid_choice(text, r, CATALOG) == choice


def test_validity_reads_the_overridden_title():
    r = Request(user=0, history=(0,), candidates=(1, 4), target=1, titles={4: "Fargo tq"})
    assert valid_choice("Fargo tq", r, CATALOG) == 4
    assert valid_choice("Fargo", r, CATALOG) is None
