"""The plugin index: plugins imported lazily, listed from the index, loaded on lookup.

Each test gets its own cache folder (``fresh_cache``) and builds hosts by hand (not the
process-wide one), with a fake distribution `idxprobe` on ``sys.path`` whose module no
other test imports, so ``sys.modules`` says whether a host imported it.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

from recguard import plugin_index
from recguard.cli import main
from recguard.errors import RecguardError
from recguard.plugins import KINDS, Host

PROBE_SOURCE = '''
from recguard import Attack, Poisoned, hookimpl
{extra_import}

class ProbeAttack(Attack):
    name = "{attack}"
    summary = "{summary}"

    def poison(self, train, ctx):
        return Poisoned.empty()


@hookimpl
def register_attacks(register):
    register(ProbeAttack)
'''

COMMANDS_SOURCE = '''

@hookimpl
def register_commands(cli):
    pass
'''


class FakeDistributions:
    """Plugin packages with their dist-info in one folder on ``sys.path``."""

    def __init__(self, folder):
        self.folder = folder
        self.modules: list[str] = []

    def add(self, module="idxprobe", plugin="probe", attack="probe-attack",
            summary="a probe", version="0.1", extra_import="", commands=False):
        package = self.folder / module
        package.mkdir(exist_ok=True)
        source = PROBE_SOURCE.format(attack=attack, summary=summary, extra_import=extra_import)
        (package / "__init__.py").write_text(source + (COMMANDS_SOURCE if commands else ""))
        self.set_version(module, plugin, version)
        self.modules.append(module)
        importlib.invalidate_caches()   # the import system and importlib.metadata cache folders
        return package / "__init__.py"

    def set_version(self, module, plugin, version):
        info = self.folder / f"{module}.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[recguard]\n{plugin} = {module}\n")

    def forget_imports(self):
        """As if this process had never imported the fake plugins."""
        for name in [m for m in sys.modules if m.split(".")[0] in self.modules]:
            del sys.modules[name]

    def imported(self, module="idxprobe") -> bool:
        return module in sys.modules


@pytest.fixture
def fakes(tmp_path, monkeypatch, fresh_cache):
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delenv(plugin_index.INDEX_ENV, raising=False)
    monkeypatch.delenv("RECGUARD_PLUGINS", raising=False)
    distributions = FakeDistributions(folder)
    yield distributions
    distributions.forget_imports()


def build_host() -> Host:
    """A host loaded as `get_host` loads it, without touching the process-wide one."""
    host = Host()
    host.load_builtins()
    host.load_entry_points()
    return host


def fresh_lazy_host(fakes) -> Host:
    """A full load (which writes the index), then a host from the index, nothing imported."""
    build_host()
    fakes.forget_imports()
    return build_host()


def index_file() -> dict:
    return json.loads(plugin_index.index_path().read_text())


def listing(host: Host) -> dict:
    """What `recguard list` and `recguard plugins` print, kind by kind."""
    shown = {kind: [(e.name, e.provenance, e.description) for e in host.registry(kind).listed()]
             for kind in KINDS}
    shown["plugins"] = [(i.name, i.provenance, i.components) for i in host.loaded]
    return shown


# ---------------------------------------------------------------- the index and lazy hosts


def test_the_index_is_written_after_a_full_load(fakes):
    fakes.add()
    host = build_host()
    probe = index_file()["plugins"]["probe"]
    assert probe["provenance"] == {"plugin": "probe", "distribution": "idxprobe", "version": "0.1"}
    assert probe["components"] == {"attack": [{"name": "probe-attack",
                                               "description": host.attacks.get("probe-attack").describe()}]}
    assert probe["commands"] is False
    assert "mf" in index_file()["plugins"]   # the bundled plugins too


def test_a_host_from_the_index_lists_the_same_and_imports_no_plugin(fakes):
    fakes.add()
    full = build_host()
    fakes.forget_imports()
    lazy = build_host()
    assert not fakes.imported()
    assert listing(lazy) == listing(full)
    assert "probe-attack" in lazy.attacks and "probe-attack" in lazy.attacks.names()
    with pytest.raises(RecguardError, match=r"did you mean 'probe-attack'"):
        lazy.attacks.get("probe-atack")
    assert not fakes.imported()


def test_a_lookup_imports_the_whole_plugin_and_returns_the_real_class(fakes):
    fakes.add()
    lazy = fresh_lazy_host(fakes)
    cls = lazy.attacks.get("probe-attack")
    assert fakes.imported() and cls is sys.modules["idxprobe"].ProbeAttack
    assert lazy.attacks.entry("probe-attack").provenance.distribution == "idxprobe"
    assert lazy.pm.get_plugin("probe") is sys.modules["idxprobe"]   # registered like a full load
    assert [i.name for i in lazy.loaded].count("probe") == 1


def test_iterating_a_registry_loads_its_lazy_plugins(fakes):
    fakes.add()
    lazy = fresh_lazy_host(fakes)
    assert sys.modules.get("idxprobe") is None
    assert "probe-attack" in [cls.name for cls in lazy.attacks.iter_objects()]
    assert fakes.imported()


def test_plugins_filter_applies_to_the_index(fakes, monkeypatch):
    fakes.add()
    build_host()
    fakes.forget_imports()
    monkeypatch.setenv("RECGUARD_PLUGINS", "probe")
    lazy = build_host()
    assert "probe-attack" in lazy.attacks and "mf" not in lazy.backbones
    assert [i.name for i in lazy.loaded] == ["recguard.builtins", "probe"]
    assert not fakes.imported()
    assert "mf" in index_file()["plugins"]   # a filtered start keeps the others' records


def test_a_plugin_that_adds_commands_is_imported_at_start(fakes):
    fakes.add(commands=True)
    lazy = fresh_lazy_host(fakes)
    assert fakes.imported() and index_file()["plugins"]["probe"]["commands"] is True
    assert lazy.pm.get_plugin("probe") is not None


# ---------------------------------------------------------------- staleness, failures, corruption


@pytest.mark.parametrize("change", ["touch a file", "new version", "new plugin"])
def test_a_changed_fingerprint_rebuilds_the_index(fakes, change):
    module_file = fakes.add()
    build_host()
    before = index_file()["fingerprint"]
    fakes.forget_imports()
    if change == "touch a file":
        os.utime(module_file, ns=(module_file.stat().st_atime_ns, module_file.stat().st_mtime_ns + 10**9))
    elif change == "new version":
        fakes.set_version("idxprobe", "probe", "0.2")
    else:
        fakes.add(module="idxprobe2", plugin="probe2", attack="probe-attack-2")
    rebuilt = build_host()
    assert fakes.imported()   # a full load
    assert index_file()["fingerprint"] != before
    version = "0.2" if change == "new version" else "0.1"
    assert rebuilt.attacks.entry("probe-attack").provenance.version == version


def test_an_edited_plugin_is_listed_as_it_now_is(fakes):
    module_file = fakes.add(summary="old words")
    build_host()
    fakes.forget_imports()
    fakes.add(summary="new words, longer")   # a different size: a new fingerprint
    assert module_file.read_text().count("new words")
    lazy = build_host()
    fakes.forget_imports()
    assert "new words" in lazy.attacks.description("probe-attack")
    assert "new words" in build_host().attacks.description("probe-attack")   # and from the index


def lazy_host_whose_dependency_vanished(fakes) -> Host:
    """A lazy host of the probe plugin whose dependency (outside the fingerprint) went away
    after the index was written."""
    dependency = fakes.folder / "idxprobe_dep.py"
    dependency.write_text("VALUE = 1\n")
    fakes.add(extra_import="import idxprobe_dep")
    lazy = fresh_lazy_host(fakes)
    dependency.unlink()
    sys.modules.pop("idxprobe_dep", None)
    return lazy


def test_a_plugin_that_fails_on_lazy_import_is_one_error_and_listed_as_failed(fakes):
    """Its dependency (outside the fingerprint) went away after the index was written."""
    lazy = lazy_host_whose_dependency_vanished(fakes)
    with pytest.raises(RecguardError) as raised:
        lazy.attacks.get("probe-attack")
    message = str(raised.value)
    assert message.startswith("plugin probe failed to load: ModuleNotFoundError") and "\n" not in message
    assert [f.name for f in lazy.failed] == ["probe"]
    assert "probe-attack" not in lazy.attacks and "probe" not in [i.name for i in lazy.loaded]
    # the next start rebuilds: the failure is found at start, as without an index
    again = build_host()
    assert [f.name for f in again.failed] == ["probe"] and "probe-attack" not in again.attacks


def test_iteration_skips_a_plugin_that_fails_on_lazy_import(fakes):
    lazy = lazy_host_whose_dependency_vanished(fakes)
    names = [cls.name for cls in lazy.attacks.iter_objects()]
    assert "probe-attack" not in names and "average" in names
    assert [f.name for f in lazy.failed] == ["probe"]


def test_the_cli_reports_a_lazy_failure_in_one_line(fakes, capsys, monkeypatch, tmp_path):
    from recguard import plugins

    monkeypatch.setattr(plugins, "_HOST", lazy_host_whose_dependency_vanished(fakes))
    with pytest.raises(SystemExit) as exited:
        main(["eval", "--quiet", "--attack", "probe-attack", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [err.strip()] and "plugin probe failed to load" in err


def test_a_duplicate_name_fails_the_second_plugin_with_or_without_the_index(fakes):
    fakes.add()
    fakes.add(module="idxprobe2", plugin="probe2")   # registers probe-attack too
    full = build_host()
    fakes.forget_imports()
    lazy = build_host()
    for host in (full, lazy):
        assert [(f.name, f.error) for f in host.failed] == [
            ("probe2", "RecguardError: attack 'probe-attack' is registered twice: "
                       "by plugin probe and by plugin probe2")]
    assert listing(lazy) == listing(full)
    assert "probe2" not in index_file()["plugins"]


@pytest.mark.parametrize("content", [
    "", "{", "[]", "null", '{"format": 1}', "\udcff", '{"format": 1, "plugins": NaN}', "RIGHT-KEY-BAD-RECORD",
])
def test_a_corrupted_index_is_rebuilt(fakes, content):
    fakes.add()
    build_host()
    if content == "RIGHT-KEY-BAD-RECORD":
        data = index_file()
        data["plugins"]["probe"]["components"] = {"attack": [{"name": 3}]}
        content = json.dumps(data)
    plugin_index.index_path().write_bytes(content.encode("utf-8", "surrogateescape"))
    fakes.forget_imports()
    host = build_host()   # never a traceback
    assert fakes.imported() and "probe-attack" in host.attacks and not host.failed
    assert plugin_index.read(index_file()["fingerprint"], KINDS)["probe"]["components"]["attack"]


def test_the_index_can_be_switched_off(fakes, monkeypatch):
    fakes.add()
    monkeypatch.setenv(plugin_index.INDEX_ENV, "off")
    build_host()
    assert not plugin_index.index_path().exists()
    monkeypatch.delenv(plugin_index.INDEX_ENV)
    build_host()
    fakes.forget_imports()
    monkeypatch.setenv(plugin_index.INDEX_ENV, "off")
    build_host()
    assert fakes.imported()   # the index exists but is not read


def test_an_unwritable_cache_only_costs_the_speed_up(fakes, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("RECGUARD_CACHE", str(blocker / "cache"))   # below a file: cannot be made
    host = build_host()
    assert "mf" in host.backbones and not host.failed


# ---------------------------------------------------------------- the real CLI, in fresh processes


def test_recguard_list_imports_no_plugin_module_with_a_fresh_index(tmp_path):
    env = {**os.environ, "RECGUARD_CACHE": str(tmp_path / "cache")}
    env.pop("RECGUARD_PLUGINS", None)
    env.pop(plugin_index.INDEX_ENV, None)
    script = textwrap.dedent("""
        import sys
        from recguard.cli import main
        try:
            main(["list"])
        except SystemExit as exc:
            assert not exc.code, exc.code
        plugins = sorted(m for m in sys.modules if m.startswith("recguard_"))
        print("PLUGIN MODULES:", ",".join(plugins))
    """)
    outputs = []
    for _ in range(2):   # cold (writes the index), then warm
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=env, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout)
    cold, warm = (out.rsplit("PLUGIN MODULES:", 1) for out in outputs)
    assert cold[1].strip() and "recguard_mf" in cold[1]
    assert warm[1].strip() == ""
    assert cold[0] == warm[0]   # the same listing
