"""Sweep spec files: lists and single values, defaults, groups, excludes, options, and every
bad input as one line that names the file and the line."""

import pytest

from recguard.errors import RecguardError
from recguard.sweep import load_sweep
from recguard.sweep.grid import expand
from recguard.sweep.spec import read_spec


def write(tmp_path, text, name="grid.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def labels(cells):
    return [(c.group, c.plan.backbone.name, c.plan.attack.name, c.plan.protocol.budget,
             c.plan.defense.name, c.seed) for c in cells]


def test_lists_and_single_values_make_a_grid_of_one_seed_cells(tmp_path):
    spec = read_spec(write(tmp_path, """
protocol = "apt"
backbone = "mf"
attack = ["average", "bandwagon"]
budget = [0.01, 0.03]
defense = "apr"
seeds = [0, 1]
"""))
    cells, refused = expand(spec)
    assert refused == []
    assert len(cells) == 2 * 2 * 2
    assert labels(cells)[:3] == [("main", "mf", "average", 0.01, "apr", 0),
                                 ("main", "mf", "average", 0.01, "apr", 1),
                                 ("main", "mf", "average", 0.03, "apr", 0)]
    assert all(len(c.plan.spec.seeds) == 1 for c in cells)


def test_groups_take_the_defaults_and_a_shared_cell_runs_once(tmp_path):
    spec = read_spec(write(tmp_path, """
headline = "T-HR@50"
[defaults]
protocol = "apt"
seeds = 0
[groups.first]
attack = ["average", "bandwagon"]
[groups.second]
attack = "bandwagon"
defense = ["none", "rvd"]
seeds = [3]
"""))
    assert [g.name for g in spec.groups] == ["first", "second"] and spec.headline == "T-HR@50"
    cells, _ = expand(spec)
    assert labels(cells) == [("first", "mf", "average", 0.03, "none", 0),
                             ("first", "mf", "bandwagon", 0.03, "none", 0),
                             ("second", "mf", "bandwagon", 0.03, "none", 3),
                             ("second", "mf", "bandwagon", 0.03, "rvd", 3)]
    again = read_spec(write(tmp_path, "[groups.a]\nprotocol='apt'\nseeds=0\n[groups.b]\nprotocol='apt'\nseeds=0\n"))
    assert len(expand(again)[0]) == 1


def test_exclude_rules_drop_matching_cells(tmp_path):
    spec = read_spec(write(tmp_path, """
protocol = "apt"
attack = ["average", "bandwagon"]
budget = [0.01, 0.03]
defense = ["none", "apr"]
seeds = [0, 1]
exclude = [{attack = "average", budget = 0.01}, {defense = "apr", seed = [1]}]
"""))
    cells, _ = expand(spec)
    got = labels(cells)
    assert not any(a == "average" and b == 0.01 for _, _, a, b, _, _ in got)
    assert not any(d == "apr" and s == 1 for *_, d, s in got)
    assert len(got) == 16 - 4 - 3


def test_options_by_role_and_by_component_name_and_lists_of_them(tmp_path):
    spec = read_spec(write(tmp_path, """
protocol = "apt"
defense = ["none", "apr"]
seeds = 0
backbone_options = {epochs = [1, 2]}
[options.apr]
adv_start = 0
"""))
    cells, _ = expand(spec)
    got = [(c.plan.defense.name, c.plan.spec.backbone_options, c.plan.spec.defense_options) for c in cells]
    assert got == [("none", {"epochs": "1"}, {}), ("none", {"epochs": "2"}, {}),
                   ("apr", {"epochs": "1"}, {"adv_start": "0"}), ("apr", {"epochs": "2"}, {"adv_start": "0"})]
    assert cells[2].plan.defense.config.adv_start == 0
    # a reader tells the cells apart by their labels (dry run, progress, failures)
    assert cells[2].label == "mf(epochs=1) · apt · average 0.03 · apr(adv_start=0) · seed 0"


@pytest.mark.parametrize("text, line, words", [
    ('protocol = "apt"\natack = "average"\n', 2, ["unknown key 'atack'", "did you mean 'attack'"]),
    ('[groups.a]\nprotocol = "apt"\n\n[groups.b]\ndefence = "apr"\n', 5, ["'defence'", "'defense'"]),
    ('[defaults]\nseed = 0\n[groups.a]\n', 2, ["unknown key 'seed' in [defaults]", "'seeds'"]),
    ('attack = "average"\nbudget = 3\n', 2, ["budget: 3 is not a fraction"]),
    ('seeds = [0, -1]\n', 1, ["-1 is not a seed"]),
    ('attack = []\n', 1, ["attack is an empty list"]),
    ('attack = "average"\nexclude = [{atack = "average"}]\n', 2, ["unknown key 'atack'"]),
    ('attack = "average"\nexclude = "x"\n', 2, ["exclude must be a list of tables"]),
    ('protocol = "apt"\nattack = "avrage"\n', 2, ["unknown attack 'avrage'", "did you mean 'average'"]),
    ('protocol = "apt"\n[backbone_options]\nepochs = "many"\n', 2, ["epochs"]),
    ('protocol = "apt"\nattack = "average"\n\n[protocol_options]\nn_targets = "x"\n', 4,
     ["protocol option n_targets"]),
    ('[defaults]\nattack = "average"\n\n[groups.a]\nseeds = [0]\nbudget = 2\n', 6, ["budget: 2 is not"]),
    ('[defaults]\nprotocol = "apt"\nseeds = [-3]\n\n[groups.a]\nattack = "average"\n', 3, ["-3 is not a seed"]),
    ('attack = "average\n', 1, ["not valid TOML"]),
    ('a = 1\n\n[groups.x\n', 3, ["not valid TOML"]),
])
def test_bad_input_is_one_line_with_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(RecguardError) as info:
        load_sweep(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_an_impossible_combination_is_refused_with_its_line_or_skipped(tmp_path):
    path = write(tmp_path, """
[groups.fine]
protocol = "apt"
seeds = 0

[groups.implicit]
protocol = "pamacf"
attack = ["average", "random"]
seeds = 0
""")
    with pytest.raises(RecguardError) as info:
        load_sweep(path)
    message = str(info.value)
    assert message.startswith(f"{path}:6: [implicit] ") and "'average' needs explicit feedback" in message
    assert "--skip-incompatible" in message
    _, cells, refused = load_sweep(path, skip_incompatible=True)
    assert [c.plan.attack.name for c in cells] == ["average", "random"]
    assert [(r.group, r.line) for r in refused] == [("implicit", 6)]


def test_missing_or_empty_spec(tmp_path):
    with pytest.raises(RecguardError, match="does not exist"):
        load_sweep(tmp_path / "nope.toml")
    with pytest.raises(RecguardError, match="is a folder"):
        load_sweep(tmp_path)
    with pytest.raises(RecguardError, match="no cell to run"):
        load_sweep(write(tmp_path, 'protocol = "apt"\nseeds = 0\nexclude = [{attack = "average"}]\n'))


def test_a_group_updates_the_default_options_key_by_key(tmp_path):
    spec = read_spec(write(tmp_path, """
[defaults]
protocol = "apt"
attack = "average"
seeds = 0
backbone_options = {epochs = 3, lr = 0.01}
[defaults.options.apr]
eps = 0.5
adv_start = 1

[groups.a]
defense = "apr"
backbone_options = {epochs = 5}
[groups.a.options.apr]
eps = [0.1, 0.2]
"""))
    cells, _ = expand(spec)
    assert [(c.plan.spec.backbone_options, c.plan.spec.defense_options) for c in cells] == [
        ({"epochs": "5", "lr": "0.01"}, {"eps": "0.1", "adv_start": "1"}),
        ({"epochs": "5", "lr": "0.01"}, {"eps": "0.2", "adv_start": "1"})]


def test_where_selects_cells_by_axis_and_by_option(tmp_path):
    path = write(tmp_path, """
protocol = "apt"
attack = ["average", "bandwagon"]
budget = [0.01, 0.03]
defense = ["none", "apr"]
seeds = [0, 1]
backbone_options = {epochs = [1, 2]}
""")
    _, every, _ = load_sweep(path)
    assert len(every) == 32
    _, cells, _ = load_sweep(path, where={"attack": ["bandwagon"], "budget": ["0.030"],
                                          "epochs": ["2"], "seed": ["1"]})
    assert [(c.plan.attack.name, c.plan.protocol.budget, c.plan.spec.backbone_options, c.seed)
            for c in cells] == [("bandwagon", 0.03, {"epochs": "2"}, 1)] * 2
    _, cells, _ = load_sweep(path, where={"defense": ["apr", "none"], "attack": ["average"]})
    assert len(cells) == 16
    with pytest.raises(RecguardError, match="--where epoch: no cell of the spec has it .*'epochs'"):
        load_sweep(path, where={"epoch": ["2"]})
    with pytest.raises(RecguardError, match="no cell matches --where defense=dp"):
        load_sweep(path, where={"defense": ["dp"]})


def test_named_options_go_to_the_component_not_to_a_protocol_of_the_same_name(tmp_path):
    spec = read_spec(write(tmp_path, """
protocol = "lorec"
backbone = "sasrec"
attack = "random"
defense = ["none", "lorec"]
seeds = 0
[options.lorec]
llm_dtype = "bfloat16"
"""))
    cells, refused = expand(spec)
    assert refused == []
    assert [c.plan.spec.defense_options for c in cells] == [{}, {"llm_dtype": "bfloat16"}]
    assert all(c.plan.spec.protocol_options == {} for c in cells)


BENCHMARK_SPECS = {"cf_defenses": 450, "heuristic_attacks": 30, "sequential_defenses": 69,
                   "llm_backdoor": 133, "optimisation_attacks": 21, "fidelity": 315}


@pytest.mark.parametrize("name, cells", sorted(BENCHMARK_SPECS.items()))
def test_the_benchmark_grids_load_with_the_cells_of_their_scripts(name, cells):
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "sweeps" / f"{name}.toml"
    _, found, refused = load_sweep(path)
    assert (len(found), refused) == (cells, [])


def test_the_rvd_stand_in_grid_loads_where_its_dataset_is_written(tmp_path, monkeypatch):
    """benchmarks/sweeps/rvd_ml1m.toml reads the ML-1M stand-in from results/ml1m-scaled
    (relative to where the sweep runs), which `benchmarks/scaled_movielens.py` writes."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "sweeps" / "rvd_ml1m.toml"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecguardError, match="results/ml1m-scaled' does not exist"):
        load_sweep(path)
    (tmp_path / "results" / "ml1m-scaled").mkdir(parents=True)
    _, found, refused = load_sweep(path)
    assert (len(found), refused) == (14, [])
