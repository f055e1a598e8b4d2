"""Plugins are imported when something they declare is first needed, never on every command.

Test plugins are installed for real: a directory holding their modules and ``.dist-info``
metadata (``plait.plugins`` plus the declaration groups) is put on ``sys.path`` — and on
``PYTHONPATH`` for the subprocesses that time real commands.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from plait import flow, plugins, task
from plait.blocks import get_block_class

ROOT = Path(__file__).resolve().parents[1]
PLAIT = Path(sys.executable).with_name("plait")
COLLECTION_MODULES = ("plait_aws", "plait_dbt", "plait_snowflake", "plait_sqlalchemy", "plait_azure", "plait_gcp",
                      "boto3", "azure", "google", "dbt", "snowflake")


def make_plugin(site: Path, module: str, source: str, declares: dict[str, list[str]] | None = None,
                requires: str = "plait>=0.1") -> None:
    """An installed distribution ``module`` whose plugin module is ``module``."""
    (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = site / f"{module}-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0.0\nRequires-Dist: {requires}\n",
        encoding="utf-8",
    )
    text = f"[plait.plugins]\n{module} = {module}\n"
    for group, names in (declares or {}).items():
        text += f"[{group}]\n" + "".join(f"{name.split(' [')[0]} = {module}{_extras(name)}\n" for name in names)
    (info / "entry_points.txt").write_text(text, encoding="utf-8")


def _extras(name: str) -> str:
    return f" [{name.split(' [')[1]}" if " [" in name else ""


def marked(marker: Path, body: str) -> str:
    """Plugin source that leaves ``marker`` behind when it is imported."""
    return f"open({str(marker)!r}, 'a').write('imported\\n')\n" + textwrap.dedent(body)


BLOCK_PLUGIN = '''
from plait.blocks import Block
from plait.hookspecs import hookimpl

class {cls}(Block):
    """A block of {module}."""

@hookimpl
def plait_register_blocks():
    return [{cls}]
'''

STORAGE_PLUGIN = '''
from plait.hookspecs import hookimpl

class Lazy:
    def __init__(self, url):
        self.uri = url

    def read_path(self, path):
        raise FileNotFoundError(path)

    def write_path(self, path, content):
        pass

@hookimpl
def plait_register_storage():
    return {"lazymem": Lazy}
'''

INFRA_PLUGIN = '''
from plait.blocks import InfrastructureBlock, InfrastructureResult
from plait.hookspecs import hookimpl

class Elsewhere(InfrastructureBlock):
    """Runs flows elsewhere."""

    def run(self, entrypoint, parameters=None):
        return InfrastructureResult(flow_run_id="-", state_type="COMPLETED", exit_code=0, message="")

@hookimpl
def plait_register_infrastructure():
    return {"elsewhere": Elsewhere}
'''

OBSERVER_PLUGIN = '''
from plait.hookspecs import hookimpl

SEEN = []

@hookimpl
def plait_task_run_state_changed(task_run, state):
    SEEN.append(state.type.value)
'''




def _status(name: str) -> str:
    return {p.name: p.status for p in plugins.plugins()}[name]


# -- in this process -------------------------------------------------------------------------
def test_discovery_reads_declarations_without_importing(site: Path, tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    make_plugin(site, "lazy_blocks", marked(marker, BLOCK_PLUGIN.format(cls="LazyThing", module="lazy_blocks")),
                {"plait.block_types": ["lazy-thing"]})
    info = {p.name: p for p in plugins.plugins()}["lazy_blocks"]
    assert (info.status, info.loaded) == ("not imported", False)
    assert info.declares["block_types"] == ["lazy-thing"] and info.hooks == ["plait_register_blocks"]
    assert plugins.diagnoses() == [] and not marker.exists()


def test_a_block_slug_imports_only_the_plugin_declaring_it(site: Path, tmp_path: Path) -> None:
    make_plugin(site, "lazy_a", marked(tmp_path / "a", BLOCK_PLUGIN.format(cls="AThing", module="lazy_a")),
                {"plait.block_types": ["a-thing"]})
    make_plugin(site, "lazy_b", marked(tmp_path / "b", BLOCK_PLUGIN.format(cls="BThing", module="lazy_b")),
                {"plait.block_types": ["b-thing"]})
    assert get_block_class("a-thing").__name__ == "AThing"
    assert (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert (_status("lazy_a"), _status("lazy_b")) == ("loaded", "not imported")
    assert plugins.block_owner("b-thing") == "lazy_b"  # known from metadata alone
    assert "b-thing" in plugins.block_classes()  # listing every type imports the rest
    assert (tmp_path / "b").exists()


def test_a_storage_scheme_imports_only_the_plugin_declaring_it(site: Path, tmp_path: Path) -> None:
    from plait.results import resolve_storage

    make_plugin(site, "lazy_store", marked(tmp_path / "store", STORAGE_PLUGIN), {"plait.storage_schemes": ["lazymem"]})
    make_plugin(site, "lazy_other", marked(tmp_path / "other", BLOCK_PLUGIN.format(cls="Other", module="lazy_other")),
                {"plait.block_types": ["other"]})
    plugins.get_plugin_manager()
    assert not (tmp_path / "store").exists()
    assert resolve_storage("lazymem://bucket/prefix").uri == "lazymem://bucket/prefix"
    assert (tmp_path / "store").exists() and not (tmp_path / "other").exists()


def test_an_infrastructure_kind_imports_only_the_plugin_declaring_it(site: Path, tmp_path: Path) -> None:
    make_plugin(site, "lazy_infra", marked(tmp_path / "infra", INFRA_PLUGIN), {"plait.infrastructure": ["elsewhere"]})
    make_plugin(site, "lazy_other", marked(tmp_path / "other", BLOCK_PLUGIN.format(cls="Other", module="lazy_other")),
                {"plait.block_types": ["other"]})
    assert plugins.infrastructure_class("elsewhere").__name__ == "Elsewhere"
    assert not (tmp_path / "other").exists()


def test_a_declared_run_time_hook_imports_its_plugin_when_called(site: Path, tmp_path: Path, plait_harness) -> None:
    make_plugin(site, "lazy_observer", OBSERVER_PLUGIN, {"plait.hooks": ["plait_task_run_state_changed"]})
    make_plugin(site, "lazy_other", marked(tmp_path / "other", BLOCK_PLUGIN.format(cls="Other", module="lazy_other")),
                {"plait.block_types": ["other"]})

    @task
    def one() -> int:
        return 1

    @flow
    def run_one() -> int:
        return one()

    assert run_one() == 1
    import lazy_observer

    assert lazy_observer.SEEN == ["PENDING", "RUNNING", "COMPLETED"]
    assert not (tmp_path / "other").exists()  # a flow that needs no block of it never imports it


def test_a_plugin_that_declares_nothing_is_imported_on_first_use(site: Path, tmp_path: Path) -> None:
    make_plugin(site, "lazy_eager", marked(tmp_path / "eager", BLOCK_PLUGIN.format(cls="Eager", module="lazy_eager")))
    plugins.get_plugin_manager()
    assert (tmp_path / "eager").exists() and _status("lazy_eager") == "loaded"
    assert plugins.diagnoses() == []  # declaring nothing is allowed (plait 0.1 plugins)


def test_what_is_declared_and_what_is_registered_must_agree(site: Path) -> None:
    make_plugin(site, "lazy_mismatch", '''
        from plait.blocks import Block
        from plait.hookspecs import hookimpl

        class Registered(Block):
            """Registered but not declared."""

        @hookimpl
        def plait_register_blocks():
            return [Registered]

        @hookimpl
        def plait_notify(event):
            pass
        ''', {"plait.block_types": ["declared-only", "optional-one [extra]"],
              "plait.hooks": ["plait_register_flows"]})
    plugins.load_all()
    reasons = sorted(d.reason for d in plugins.diagnoses() if d.plugin == "lazy_mismatch")
    assert reasons == [
        "declares block type 'declared-only' (plait.block_types) but does not register it",
        "declares plait_register_flows (plait.hooks) but does not implement it",
        "implements plait_notify without declaring it",
        "registers block type 'registered' without declaring it",
    ]
    fixes = " ".join(d.fix for d in plugins.diagnoses() if d.plugin == "lazy_mismatch")
    assert 'add registered = "lazy_mismatch" to [project.entry-points."plait.block_types"]' in fixes
    assert plugins.block_class("registered").__name__ == "Registered"  # it still works once imported


def test_two_plugins_declaring_one_slug_is_a_diagnosis(site: Path) -> None:
    for module in ("lazy_first", "lazy_second"):
        make_plugin(site, module, BLOCK_PLUGIN.format(cls="Same", module=module), {"plait.block_types": ["same"]})
    [diagnosis] = plugins.diagnoses()
    assert diagnosis.plugin == "lazy_second"
    assert diagnosis.reason == "declares block type 'same', which plugin 'lazy_first' provides too"
    assert get_block_class("same").__module__ == "lazy_first"
    assert _status("lazy_second") == "not imported"


def test_plugins_ls_shows_what_is_not_imported_yet(site: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from plait.cli import cli

    source = marked(tmp_path / "listed", BLOCK_PLUGIN.format(cls="Listed", module="lazy_listed"))
    make_plugin(site, "lazy_listed", source, {"plait.block_types": ["listed"]})
    out = CliRunner().invoke(cli, ["plugins", "ls"]).output
    [row] = [line for line in out.splitlines() if line.startswith("lazy_listed ")]
    assert "not yet" in row and "blocks: listed" in row
    assert "plait plugins ls --load" in out and not (tmp_path / "listed").exists()
    data = json.loads(CliRunner().invoke(cli, ["plugins", "ls", "--load", "--json"]).output)
    [listed] = [p for p in data["plugins"] if p["name"] == "lazy_listed"]
    assert (listed["status"], listed["loaded"], listed["declares"]["block_types"]) == ("loaded", True, ["listed"])
    assert (tmp_path / "listed").exists()


def test_plait_task_run_state_changed_no_op_hook_is_cheap_on_the_hot_path(site: Path, plait_harness) -> None:
    """One no-op observer costs one pluggy call per task state: measured, a few microseconds."""
    make_plugin(site, "lazy_noop", '''
        from plait.hookspecs import hookimpl

        @hookimpl
        def plait_task_run_state_changed(task_run, state):
            pass
        ''', {"plait.hooks": ["plait_task_run_state_changed"]})
    caller = plugins.hook_caller("plait_task_run_state_changed")
    calls, per_call = 4_000, float("inf")
    for _ in range(5):  # best of five rounds: a busy machine slows some rounds, not all
        started = time.perf_counter()
        for _ in range(calls):
            caller(task_run=None, state=None)
        per_call = min(per_call, (time.perf_counter() - started) / calls)

    @task
    def noop(i: int) -> int:
        return i

    @flow
    def fan_out() -> int:
        return sum(noop(i) for i in range(500))

    started = time.perf_counter()
    assert fan_out() == sum(range(500))
    with_hook = time.perf_counter() - started
    print(f"\nno-op task hook: {per_call * 1e6:.1f} µs per call; 500-task flow with it: {with_hook:.2f} s")
    assert per_call < 50e-6, f"a no-op hook call costs {per_call * 1e6:.1f} µs"


# -- fresh processes ----------------------------------------------------------------------------
def _env(site: Path, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]), PLAIT_HOME=str(home),
               PLAIT_LOG_TO_CONSOLE="false", **extra)
    return env


SLOW_PLUGIN = '''
import os
import time

from plait.blocks import Block
from plait.hookspecs import hookimpl

open({marker!r}, "a").write("imported\\n")
time.sleep(float(os.environ.get("SLOW_PLUGIN_SECONDS", "10")))

class SlowThing(Block):
    """A block whose plugin takes ten seconds to import."""

@hookimpl
def plait_register_blocks():
    return [SlowThing]
'''

FLOW_SCRIPT = '''
import sys
from plait import flow, task
from plait.blocks import Block
from plait_blocks import JSON

@task(cache_policy="inputs", persist_result=True)
def square(x: int) -> int:
    return x * x

@flow
def work(n: int) -> int:
    JSON(value={"n": n}).save("settings", overwrite=True)
    return sum(square(i) for i in range(n)) + Block.load("json/settings").value["n"]

assert work(5) == 35 and work(5) == 35
print(sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[1:])))
'''


def test_a_plugin_that_takes_ten_seconds_to_import_does_not_slow_what_does_not_use_it(site: Path,
                                                                                     tmp_path: Path) -> None:
    marker = tmp_path / "slow-imported"
    make_plugin(site, "lazy_slow", SLOW_PLUGIN.format(marker=str(marker)), {"plait.block_types": ["slow-thing"]})
    env = _env(site, tmp_path / "home")
    script = tmp_path / "work.py"
    script.write_text(FLOW_SCRIPT, encoding="utf-8")
    runs = {
        "flow-run ls": [str(PLAIT), "flow-run", "ls"],
        "block ls": [str(PLAIT), "block", "ls"],
        "config show": [str(PLAIT), "config", "show"],
        "a flow with cached results and blocks": [sys.executable, str(script), "lazy_slow", *COLLECTION_MODULES],
    }
    for label, command in runs.items():
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        took = time.perf_counter() - started
        assert done.returncode == 0, f"{label}: {done.stderr}"
        assert not marker.exists(), f"{label} imported the slow plugin"
        assert took < 60, f"{label} took {took:.1f} s"  # a hang; the marker above is the real check
    assert done.stdout.strip().splitlines()[-1] == "[]"  # the flow imported no collection either
    # what does use it imports it (quickly here)
    code = "from plait.blocks import get_block_class as g; print(g('slow-thing').__name__)"
    done = subprocess.run([sys.executable, "-c", code], env=dict(env, SLOW_PLUGIN_SECONDS="0"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "SlowThing" and marker.exists()


LIST_MODULES = '''
import json, sys
sys.argv = ["plait", *sys.argv[1:]]
from plait.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
'''


def test_flow_run_ls_imports_no_collection(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PLAIT_HOME=str(tmp_path / "home"))
    done = subprocess.run([sys.executable, "-c", LIST_MODULES, "flow-run", "ls"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "No flow runs found." in done.stdout
    imported = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert imported & set(COLLECTION_MODULES) == set()
    assert "plait_blocks" not in imported  # it needs no plugin at all


def test_a_fresh_process_resolves_a_declared_storage_scheme(site: Path, tmp_path: Path) -> None:
    make_plugin(site, "lazy_store", STORAGE_PLUGIN, {"plait.storage_schemes": ["lazymem"]})
    env = _env(site, tmp_path / "home")
    code = "from plait.results import resolve_storage; print(resolve_storage('lazymem://bucket/prefix').uri)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "lazymem://bucket/prefix"
    flow_code = textwrap.dedent('''
        from plait import flow, task

        @task(persist_result=True, result_storage="lazymem://bucket/prefix")
        def one():
            return 1

        @flow
        def f():
            return one(return_state=True).result_ref

        print(f())
        ''')
    done = subprocess.run([sys.executable, "-c", flow_code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("lazymem://bucket/prefix/")


# -- the real collections ----------------------------------------------------------------------
CHECK_ALL = '''
import json
from plait import plugins
plugins.load_all()
print(json.dumps({
    "diagnoses": [str(d) for d in plugins.diagnoses()],
    "plugins": {p.name: [p.status, p.declares] for p in plugins.plugins()},
    "blocks": {slug: plugins.block_owner(slug) for slug in plugins.block_classes()},
}))
'''


def test_the_installed_collections_declare_what_they_register(tmp_path: Path) -> None:
    """The metadata of plait and the four collections matches their plugin modules (reinstall
    a collection after changing its declarations: metadata is written at install time)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PLAIT_HOME=str(tmp_path / "home"))
    done = subprocess.run([sys.executable, "-c", CHECK_ALL], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["diagnoses"] == []
    registry = json.loads((ROOT / "registry.json").read_text(encoding="utf-8"))
    expected = {"plait_blocks": registry["builtin"]}
    expected.update({f"plait_{name.removeprefix('plait-')}": entry for name, entry in registry["collections"].items()})
    for name, entry in expected.items():
        status, declares = report["plugins"][name]
        assert status == "loaded", name
        assert declares["block_types"] == sorted(b["slug"] for b in entry["blocks"]), name
        assert declares["storage_schemes"] == entry["storage_schemes"], name
        assert declares["infrastructure"] == sorted(i["kind"] for i in entry["infrastructure"]), name
        assert declares.get("task_runners", []) == sorted(r["name"] for r in entry.get("task_runners", [])), name
        implied = {"plait_register_blocks", "plait_register_storage", "plait_register_infrastructure",
                   "plait_register_task_runners"}
        assert sorted(set(entry["hooks"]) - implied) == declares["hooks"], name
        for block in entry["blocks"]:
            assert report["blocks"].get(block["slug"]) == name


def test_a_flow_run_builds_no_block_class_it_does_not_use(tmp_path: Path) -> None:
    """The built-in plugin is imported by every flow run (for notifications); its block
    classes, and the registration hooks that hand them out, wait until a block is needed."""
    code = textwrap.dedent('''
        import sys
        from plait import flow, task

        @task
        def one():
            return 1

        @flow
        def plain():
            return one()

        assert plain() == 1
        print(sorted(m for m in sys.modules if m.startswith("plait_blocks.")))
        from plait.blocks import get_block_class
        assert get_block_class("secret").__name__ == "Secret"
        print(sorted(m for m in sys.modules if m.startswith("plait_blocks.")))
    ''')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PLAIT_HOME=str(tmp_path / "home"), PLAIT_LOG_TO_CONSOLE="false")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    before, after = done.stdout.strip().splitlines()[-2:]
    assert before == "['plait_blocks.plugin']"
    assert "plait_blocks.values" in after and "plait_blocks.notifications" in after


def test_threads_asking_for_a_lazy_storage_scheme_at_once_all_get_it(tmp_path: Path) -> None:
    """The default task runner runs mapped tasks on threads: their first result writes ask
    for file:// together, while the built-in plugin is still registering it. Each must wait
    for the registration instead of finding the scheme declared but not there yet."""
    script = textwrap.dedent(f"""
        import threading
        from plait.results import resolve_storage

        gate = threading.Barrier(16)
        errors = []

        def ask(i):
            gate.wait()
            try:
                resolve_storage("file://{tmp_path}/storage-" + str(i))
            except Exception as exc:
                errors.append(repr(exc))

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
        for t in threads: t.start()
        for t in threads: t.join()
        print(errors)
    """)
    for _ in range(3):  # a race: give it a few fresh processes
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PLAIT_HOME": str(tmp_path / "home")})
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "[]", done.stdout
