"""The plugin system: discovery by entry point, every hook, isolation of broken plugins."""

import ast
import logging
import re
import textwrap
from pathlib import Path

import pytest

from plait import flow, hookspecs, plugins, task
from plait.plugins import PluginError

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("plait_"))

GOOD_PLUGIN = textwrap.dedent(
    '''
    from plait import flow, task
    from plait.blocks import Block, StorageBlock
    from plait.hookspecs import hookimpl
    from pydantic import Field

    SEEN = {"flow": [], "task": [], "notify": []}
    STORE = {}

    class GreeterConfig(Block):
        """Says hello."""
        greeting: str = Field("hi", description="What to say.")

    class MemoryStorage(StorageBlock):
        """Keeps bytes in a dict."""
        bucket: str = Field(description="Name of the bucket.")

        @property
        def uri(self):
            return f"mem://{self.bucket}"

        def read_path(self, path):
            try:
                return STORE[(self.bucket, path)]
            except KeyError:
                raise FileNotFoundError(path) from None

        def write_path(self, path, content):
            STORE[(self.bucket, path)] = content

    @task
    def greet(name: str) -> str:
        return f"hi {name}"

    @flow
    def greeting_flow():
        return greet("plait")

    @hookimpl
    def plait_register_blocks(register):
        register(GreeterConfig)
        register(MemoryStorage)

    @hookimpl
    def plait_register_tasks(register):
        register(greet)

    @hookimpl
    def plait_register_flows(register):
        register(greeting_flow)

    @hookimpl
    def plait_register_storage(register):
        register("mem", lambda url: MemoryStorage(bucket=url.split("://", 1)[1].split("/")[0]))

    @hookimpl
    def plait_register_infrastructure(register):
        register("memory", GreeterConfig)

    @hookimpl
    def plait_flow_run_state_changed(flow_run, state):
        SEEN["flow"].append((flow_run.flow_name, state.type.value))

    @hookimpl
    def plait_task_run_state_changed(task_run, state):
        SEEN["task"].append((task_run.task_name, state.type.value))

    @hookimpl
    def plait_notify(event):
        SEEN["notify"].append((event.flow_name, event.state_type))
    '''
)


def make_distribution(site: Path, name: str, source: str, requires_plait: str | None = None) -> None:
    """A minimal installed distribution: a module plus .dist-info with a plait.plugins entry point."""
    module = name.replace("-", "_")
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-1.2.3.dist-info"
    info.mkdir()
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n"
    if requires_plait:
        meta += f"Requires-Dist: plait{requires_plait}\n"
    (info / "METADATA").write_text(meta)
    (info / "entry_points.txt").write_text(f"[plait.plugins]\n{module} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("PLAIT_PLUGINS", raising=False)
    monkeypatch.delenv("PLAIT_PLUGINS_STRICT", raising=False)
    plugins.reset_plugins()
    yield site
    import sys

    for name in [m for m in sys.modules if m.startswith("fake_")]:
        del sys.modules[name]
    plugins.reset_plugins()


def test_builtin_blocks_load_through_the_entry_point(site):
    infos = {p.name: p for p in plugins.plugins()}
    assert infos["plait_blocks"].loaded
    assert infos["plait_blocks"].distribution == "plait"


def test_plait_register_blocks(site):
    make_distribution(site, "fake-good", GOOD_PLUGIN, ">=0.1,<1")
    info = {p.name: p for p in plugins.plugins()}["fake_good"]
    assert info.loaded and info.version == "1.2.3" and info.requires_plait == "<1,>=0.1"
    assert "plait_register_blocks" in info.hooks
    assert {"greeter-config", "memory-storage"} <= set(plugins.block_classes())
    assert plugins.diagnoses() == []


def test_plait_register_tasks(site):
    make_distribution(site, "fake-good", GOOD_PLUGIN)
    assert [t.name for owner, t in plugins.registered_tasks() if owner == "fake_good"] == ["greet"]


def test_plait_register_flows(site):
    make_distribution(site, "fake-good", GOOD_PLUGIN)
    assert [f.name for owner, f in plugins.registered_flows() if owner == "fake_good"] == ["greeting-flow"]


def test_plait_register_storage_serves_result_storage_urls(site, plait_harness):
    make_distribution(site, "fake-good", GOOD_PLUGIN)
    plugins.get_plugin_manager()
    import fake_good

    @task(cache_policy="inputs", result_storage="mem://results")
    def compute(x):
        return x * 3

    @flow
    def f():
        return compute(2, return_state=True), compute(2, return_state=True)

    first, second = f()
    assert first.result() == 6 and second.is_cached()
    assert first.result_ref.startswith("mem://results/")
    assert any(bucket == "results" for bucket, _ in fake_good.STORE)


def test_plait_register_infrastructure(site):
    make_distribution(site, "fake-good", GOOD_PLUGIN)
    kinds = plugins.infrastructure_kinds()
    assert kinds["memory"].__name__ == "GreeterConfig"
    assert kinds["process"].block_type_slug == "process"  # the built-in one


def _run_observed_flow(site):
    make_distribution(site, "fake-good", GOOD_PLUGIN)
    plugins.get_plugin_manager()
    import fake_good

    @task
    def one():
        return 1

    @flow(name="observed")
    def observed():
        return one()

    observed()
    return fake_good.SEEN


def test_plait_flow_run_state_changed(site, plait_harness):
    seen = _run_observed_flow(site)
    assert seen["flow"] == [("observed", "PENDING"), ("observed", "RUNNING"), ("observed", "COMPLETED")]


def test_plait_task_run_state_changed(site, plait_harness):
    seen = _run_observed_flow(site)
    assert seen["task"] == [("one", "PENDING"), ("one", "RUNNING"), ("one", "COMPLETED")]


def test_plait_notify(site, plait_harness):
    seen = _run_observed_flow(site)
    assert seen["notify"] == [("observed", "PENDING"), ("observed", "RUNNING"), ("observed", "COMPLETED")]


def test_plugin_that_fails_to_import_is_a_diagnosis_not_a_crash(site, plait_harness, caplog):
    make_distribution(site, "fake-broken", "import no_such_module_anywhere\n")
    make_distribution(site, "fake-good", GOOD_PLUGIN)
    with caplog.at_level(logging.WARNING, logger="plait.plugins"):
        found = {d.plugin: d for d in plugins.diagnoses()}
    assert "fake_broken" in found
    assert "failed to import fake_broken (ModuleNotFoundError" in found["fake_broken"].reason
    assert "PLAIT_PLUGINS" in found["fake_broken"].fix
    assert {p.name: p.loaded for p in plugins.plugins()}["fake_good"] is True  # others unaffected
    warnings = [r for r in caplog.records if "plugin problem" in r.getMessage()]
    assert len(warnings) == 1 and "plait plugins ls" in warnings[0].getMessage()

    @flow
    def still_works():
        return 5

    assert still_works() == 5


def test_incompatible_plugin_is_not_loaded(site):
    make_distribution(site, "fake-old", GOOD_PLUGIN.replace("greeter-config", "x"), "<0.0.1")
    [diagnosis] = [d for d in plugins.diagnoses() if d.plugin == "fake_old"]
    assert "supports plait<0.0.1, but plait 0.1.0 is installed" in diagnosis.reason
    assert "install a version of fake-old" in diagnosis.fix
    assert "greeter-config" not in plugins.block_classes()


def test_hook_that_raises_is_isolated(site, plait_harness):
    source = GOOD_PLUGIN + textwrap.dedent(
        '''
        @hookimpl(specname="plait_register_tasks")
        def broken_tasks(register):
            raise RuntimeError("task registry exploded")
        '''
    )
    make_distribution(site, "fake-raising", source)
    reasons = [d.reason for d in plugins.diagnoses() if d.plugin == "fake_raising"]
    assert reasons == ["hook plait_register_tasks raised RuntimeError: task registry exploded"]
    assert "greeter-config" in plugins.block_classes()  # its other hooks still count


def test_raising_lifecycle_hook_does_not_fail_the_flow(site, plait_harness):
    make_distribution(site, "fake-noisy", textwrap.dedent(
        '''
        from plait.hookspecs import hookimpl

        @hookimpl
        def plait_flow_run_state_changed(flow_run, state):
            raise ValueError("observer bug")
        '''
    ))

    @flow
    def f():
        return "fine"

    assert f() == "fine"
    assert any("observer bug" in d.reason for d in plugins.diagnoses())


def test_plait_plugins_restricts_loading(site, monkeypatch):
    make_distribution(site, "fake-good", GOOD_PLUGIN)
    monkeypatch.setenv("PLAIT_PLUGINS", "fake_good")
    plugins.reset_plugins()
    assert [p.name for p in plugins.plugins()] == ["fake_good"]
    assert "local-file-system" not in plugins.block_classes()


def test_strict_mode_turns_diagnoses_into_errors(site, monkeypatch):
    make_distribution(site, "fake-broken", "raise ImportError('half installed')\n")
    monkeypatch.setenv("PLAIT_PLUGINS_STRICT", "true")
    plugins.reset_plugins()
    with pytest.raises(PluginError, match="fake_broken 1.2.3: failed to import fake_broken .*half installed"):
        plugins.get_plugin_manager()


def test_bad_hook_signature_names_the_problem(site):
    make_distribution(site, "fake-sig", textwrap.dedent(
        '''
        from plait.hookspecs import hookimpl

        @hookimpl
        def plait_register_blocks(register, extra_argument):
            pass
        '''
    ))
    [diagnosis] = [d for d in plugins.diagnoses() if d.plugin == "fake_sig"]
    assert "do not match the contract" in diagnosis.reason and "extra_argument" in diagnosis.reason


# -- the contract is documented and tested ------------------------------------------------------
def test_plugin_hooks_are_documented():
    doc = (ROOT / "docs" / "plugins.md").read_text()
    for hook in HOOKS:
        assert re.search(rf"^###\s+`?{hook}\b", doc, re.MULTILINE), f"{hook} has no section in docs/plugins.md"
        heading = re.search(rf"^###\s+`?{hook}\b.*$", doc, re.MULTILINE)
        section = doc[heading.end():].split("\n### ", 1)[0]
        assert "```python" in section, f"the docs/plugins.md section of {hook} has no example"


def test_plugin_hooks_have_tests():
    tested: set[str] = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                tested.update(h for h in HOOKS if h in node.name)
    assert set(HOOKS) - tested == set(), "hooks without a test named after them"
