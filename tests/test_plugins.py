"""The plugin system: discovery by entry point, every hook, isolation of broken plugins."""

import ast
import logging
import re
import sys
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
    from plait.blocks import Block, InfrastructureBlock, InfrastructureResult, StorageBlock
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

    class MemoryRunner(InfrastructureBlock):
        """Pretends to run flows."""

        def run(self, entrypoint, parameters=None):
            return InfrastructureResult(flow_run_id="-", state_type="COMPLETED", exit_code=0, message=entrypoint)

    @task
    def greet(name: str) -> str:
        return f"hi {name}"

    @flow
    def greeting_flow():
        return greet("plait")

    @hookimpl
    def plait_register_blocks():
        return [GreeterConfig, MemoryStorage]

    @hookimpl
    def plait_register_tasks():
        return [greet]

    @hookimpl
    def plait_register_flows():
        return [greeting_flow]

    @hookimpl
    def plait_register_storage():
        return {"mem": lambda url: MemoryStorage(bucket=url.split("://", 1)[1].split("/")[0])}

    @hookimpl
    def plait_register_infrastructure():
        return {"memory": MemoryRunner}

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


def make_distribution(site: Path, name: str, source: str, requires_plait: str | None = None,
                      declares: dict[str, list[str]] | None = None) -> None:
    """A minimal installed distribution: a module plus .dist-info with a plait.plugins entry
    point, and optionally declarations (``{"plait.block_types": ["slug"], ...}``)."""
    module = name.replace("-", "_")
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-1.2.3.dist-info"
    info.mkdir()
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n"
    if requires_plait:
        meta += f"Requires-Dist: plait{requires_plait}\n"
    (info / "METADATA").write_text(meta)
    text = f"[plait.plugins]\n{module} = {module}\n"
    for group, names in (declares or {}).items():
        text += f"[{group}]\n" + "".join(f"{n} = {module}\n" for n in names)
    (info / "entry_points.txt").write_text(text)




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
    assert kinds["memory"].__name__ == "MemoryRunner"
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
    make_distribution(site, "fake-other", GOOD_PLUGIN.replace("greeter-config", "x"))
    monkeypatch.setenv("PLAIT_PLUGINS", "fake_good")
    plugins.reset_plugins()
    assert [p.name for p in plugins.plugins() if not p.default] == ["fake_good"]
    assert "fake_other" not in sys.modules
    # the built-in blocks are a default plugin: PLAIT_PLUGINS never drops them (issue 8)
    assert [p.name for p in plugins.plugins() if p.default] == ["plait_blocks"]
    assert "local-file-system" in plugins.block_classes()


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


# -- pluggy does the calling: order, wrappers, tracing ---------------------------------------------
CALLS_MODULE = "CALLS = []\n"


def _observer(mark: str, options: str = "") -> str:
    return textwrap.dedent(
        f'''
        from plait.hookspecs import hookimpl
        from fake_calls import CALLS

        @hookimpl({options})
        def plait_flow_run_state_changed(flow_run, state):
            CALLS.append(("{mark}", state.type.value))
        '''
    )


def _run_flow(name: str = "observed") -> None:
    @flow(name=name)
    def observed():
        return 1

    observed()


def test_plait_flow_run_state_changed_order_follows_tryfirst_and_trylast(site, plait_harness):
    (site / "fake_calls.py").write_text(CALLS_MODULE)
    make_distribution(site, "fake-aaa", _observer("last", "trylast=True"))
    make_distribution(site, "fake-mmm", _observer("middle"))
    make_distribution(site, "fake-zzz", _observer("first", "tryfirst=True"))
    _run_flow()
    import fake_calls

    # plugins load in name order (aaa, mmm, zzz); the old hand loop called them in that order
    assert [mark for mark, state in fake_calls.CALLS if state == "PENDING"] == ["first", "middle", "last"]
    assert plugins.diagnoses() == []


def test_plait_notify_wrapper_runs_around_the_other_implementations(site, plait_harness):
    (site / "fake_calls.py").write_text(CALLS_MODULE)
    make_distribution(site, "fake-wrapper", textwrap.dedent(
        '''
        from plait.hookspecs import hookimpl
        from fake_calls import CALLS

        @hookimpl(wrapper=True)
        def plait_notify(event):
            CALLS.append(("before", event.state_type))
            answers = yield
            CALLS.append(("after", event.state_type))
            return answers

        @hookimpl(hookwrapper=True)
        def plait_flow_run_state_changed(flow_run, state):
            CALLS.append(("old-style before", state.type.value))
            outcome = yield
            outcome.get_result()
            CALLS.append(("old-style after", state.type.value))
        '''
    ))
    make_distribution(site, "fake-inner", textwrap.dedent(
        '''
        from plait.hookspecs import hookimpl
        from fake_calls import CALLS

        @hookimpl
        def plait_notify(event):
            CALLS.append(("inner", event.state_type))

        @hookimpl
        def plait_flow_run_state_changed(flow_run, state):
            CALLS.append(("observer", state.type.value))
        '''
    ))
    _run_flow()
    import fake_calls

    pending = [mark for mark, state in fake_calls.CALLS if state == "PENDING"]
    assert pending == ["old-style before", "observer", "old-style after", "before", "inner", "after"]
    assert len(fake_calls.CALLS) == 3 * 6  # PENDING, RUNNING, COMPLETED
    assert plugins.diagnoses() == []


def test_a_raising_wrapper_is_isolated(site, plait_harness):
    (site / "fake_calls.py").write_text(CALLS_MODULE)
    make_distribution(site, "fake-badwrap", textwrap.dedent(
        '''
        from plait.hookspecs import hookimpl

        @hookimpl(wrapper=True)
        def plait_notify(event):
            raise RuntimeError("wrapper broke before yielding")
            yield

        @hookimpl(wrapper=True)
        def plait_flow_run_state_changed(flow_run, state):
            result = yield
            raise RuntimeError("wrapper broke after yielding")
        '''
    ))
    inner_notify = "@hookimpl()\ndef plait_notify(event):\n    CALLS.append(('inner', event.state_type))\n\n@hookimpl()"
    make_distribution(site, "fake-inner", _observer("observer").replace("@hookimpl()", inner_notify))
    _run_flow()
    import fake_calls

    assert ("observer", "COMPLETED") in fake_calls.CALLS and ("inner", "COMPLETED") in fake_calls.CALLS
    reasons = sorted(d.reason for d in plugins.diagnoses() if d.plugin == "fake_badwrap")
    assert reasons == ["hook plait_flow_run_state_changed raised RuntimeError: wrapper broke after yielding",
                       "hook plait_notify raised RuntimeError: wrapper broke before yielding"]


def test_plait_trace_plugins_prints_every_hook_call(site, tmp_path):
    import os
    import subprocess

    script = tmp_path / "traced.py"
    script.write_text("from plait import flow\nfrom plait.blocks import get_block_class\n\n@flow\n"
                      "def traced():\n    return get_block_class('secret')\n\ntraced()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PLAIT_HOME=str(tmp_path / "home"), PLAIT_TRACE_PLUGINS="1", PLAIT_PLUGINS="")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    traced = [line for line in done.stderr.splitlines() if line.startswith("plait plugin trace:")]
    assert any("plait_flow_run_state_changed" in line for line in traced)
    assert any("plait_notify" in line for line in traced)
    assert any("finish plait_register_blocks" in line for line in traced)  # the built-in plugin's registration


# -- isolation ---------------------------------------------------------------------------------
def test_plait_task_run_state_changed_raising_is_one_diagnosis_per_plugin_and_hook(
    site, plait_harness, caplog, monkeypatch
):
    # plait's own console handler would take plait's records instead of the root's (caplog's)
    monkeypatch.setenv("PLAIT_LOG_TO_CONSOLE", "false")
    make_distribution(site, "fake-flaky", textwrap.dedent(
        '''
        from plait.hookspecs import hookimpl

        CALLS = []

        @hookimpl
        def plait_task_run_state_changed(task_run, state):
            CALLS.append(state.type.value)
            raise ValueError("observer bug")

        @hookimpl
        def plait_flow_run_state_changed(flow_run, state):
            raise KeyError("flow observer bug")
        '''
    ))

    @task
    def double(x):
        return 2 * x

    @flow
    def many():
        return sum(double(i) for i in range(500))

    with caplog.at_level(logging.WARNING, logger="plait.plugins"):
        assert many() == 249500
        assert many() == 249500
    import fake_flaky

    assert len(fake_flaky.CALLS) == 2 * 500 * 3  # the hook keeps being called
    ours = [d for d in plugins.diagnoses() if d.plugin == "fake_flaky"]
    assert sorted(d.reason for d in ours) == [
        "hook plait_flow_run_state_changed raised KeyError: 'flow observer bug'",
        "hook plait_task_run_state_changed raised ValueError: observer bug",
    ]
    warned = [r for r in caplog.records if r.name == "plait.plugins"]
    assert len(warned) == 2, [r.getMessage() for r in warned]


def test_plugin_that_exits_at_import_is_a_diagnosis(site, tmp_path):
    import os
    import subprocess

    make_distribution(site, "fake-exit", "import sys\nsys.exit(3)\n")
    make_distribution(site, "fake-base", "class Boom(BaseException):\n    pass\n\nraise Boom('not an Exception')\n")
    make_distribution(site, "fake-good", GOOD_PLUGIN)
    found = {d.plugin: d.reason for d in plugins.diagnoses()}
    assert found["fake_exit"] == "failed to import fake_exit (SystemExit: 3)"
    assert found["fake_base"] == "failed to import fake_base (Boom: not an Exception)"
    assert "greeter-config" in plugins.block_classes()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PYTHONPATH=str(site), PLAIT_HOME=str(tmp_path / "home"))
    plait = Path(sys.executable).with_name("plait")
    for command in (["block", "types"], ["plugins", "ls"]):
        done = subprocess.run([str(plait), *command], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert "SystemExit: 3" in done.stdout  # plugins ls lists the problem


def test_incompatible_plugin_is_never_imported(site, tmp_path):
    marker = tmp_path / "imported"
    make_distribution(site, "fake-future", f"open({str(marker)!r}, 'w').close()\n", ">=99")
    [diagnosis] = [d for d in plugins.diagnoses() if d.plugin == "fake_future"]
    assert "supports plait>=99" in diagnosis.reason
    assert {p.name: p.status for p in plugins.plugins()}["fake_future"] == "incompatible"
    plugins.load_all()
    assert not marker.exists() and "fake_future" not in sys.modules


def test_bad_hook_signature_drops_only_that_hook(site, plait_harness):
    make_distribution(site, "fake-halfbad", textwrap.dedent(
        '''
        from plait import task
        from plait.hookspecs import hookimpl

        NOTIFIED = []

        @task
        def helper():
            return 1

        @hookimpl
        def plait_register_blocks(register, extra_argument):
            return []

        @hookimpl
        def plait_register_tasks():
            return [helper]

        @hookimpl
        def plait_notify(event):
            NOTIFIED.append(event.state_type)

        @hookimpl
        def plait_notfy(event):
            pass
        '''
    ))
    reasons = [d.reason for d in plugins.diagnoses() if d.plugin == "fake_halfbad"]
    assert len(reasons) == 2
    [typo] = [r for r in reasons if "plait_notfy" in r]
    assert "is not a plait hook; did you mean plait_notify?" in typo
    [signature] = [r for r in reasons if "extra_argument" in r]
    assert "do not match the contract" in signature and "'fake_halfbad' for hook 'plait_register_blocks'" in signature
    info = {p.name: p for p in plugins.plugins()}["fake_halfbad"]
    assert info.loaded and info.hooks == ["plait_notify", "plait_register_tasks"]
    assert [t.name for owner, t in plugins.registered_tasks() if owner == "fake_halfbad"] == ["helper"]
    _run_flow()
    import fake_halfbad

    assert fake_halfbad.NOTIFIED == ["PENDING", "RUNNING", "COMPLETED"]


def _storage_plugin(tag: str) -> str:
    return textwrap.dedent(
        f'''
        from plait.hookspecs import hookimpl

        class Store:
            def __init__(self, url):
                self.url, self.tag = url, "{tag}"

            def read_path(self, path):
                raise FileNotFoundError(path)

            def write_path(self, path, content):
                pass

        @hookimpl
        def plait_register_storage():
            return {{"shared": Store}}
        '''
    )


def test_plait_register_storage_scheme_clash_is_a_diagnosis(site):
    from plait.results import resolve_storage

    make_distribution(site, "fake-store-one", _storage_plugin("one"))
    make_distribution(site, "fake-store-two", _storage_plugin("two"))
    [diagnosis] = [d for d in plugins.diagnoses() if d.plugin == "fake_store_two"]
    assert diagnosis.reason == "registers storage scheme shared://, which plugin 'fake_store_one' already provides"
    assert "plait uses fake_store_one's" in diagnosis.fix
    assert resolve_storage("shared://bucket").tag == "one"


def test_block_slug_clash_is_a_diagnosis(site):
    make_distribution(site, "fake-good", GOOD_PLUGIN)
    make_distribution(site, "fake-zcopy", GOOD_PLUGIN)  # loads after fake_good (name order)
    reasons = [d.reason for d in plugins.diagnoses() if d.plugin == "fake_zcopy"]
    assert "registers block type 'greeter-config', which plugin 'fake_good' already provides" in reasons
    assert "registers storage scheme mem://, which plugin 'fake_good' already provides" in reasons
    assert "registers infrastructure kind 'memory', which plugin 'fake_good' already provides" in reasons
    import fake_good

    assert plugins.block_classes()["greeter-config"] is fake_good.GreeterConfig
    assert plugins.block_owner("greeter-config") == "fake_good"


def test_registrations_are_validated(site):
    make_distribution(site, "fake-sloppy", textwrap.dedent(
        '''
        from plait import flow, task
        from plait.blocks import Block, InfrastructureBlock, InfrastructureResult
        from plait.hookspecs import hookimpl

        class Fine(Block):
            """A real block."""

        class Runner(InfrastructureBlock):
            """A real infrastructure block."""

            def run(self, entrypoint, parameters=None):
                return InfrastructureResult(flow_run_id="-", state_type="COMPLETED", exit_code=0, message="")

        class NotABlock:
            pass

        @task
        def a_task():
            return 1

        @flow
        def a_flow():
            return 1

        def plain_function():
            return 1

        @hookimpl
        def plait_register_blocks():
            return [NotABlock, Fine]

        @hookimpl(specname="plait_register_blocks")
        def more_blocks():
            return {"fine": Fine}

        @hookimpl
        def plait_register_tasks():
            return [plain_function, a_task, a_flow]

        @hookimpl
        def plait_register_flows():
            return [a_task, a_flow]

        @hookimpl
        def plait_register_infrastructure():
            return {"runner": Runner, "fake": Fine}

        @hookimpl
        def plait_register_storage():
            return {"okay": lambda url: None, "bad": "not callable", "x": lambda url: None}
        '''
    ))
    reasons = sorted(re.sub(r" at 0x[0-9a-f]+", " at ADDR", d.reason) for d in plugins.diagnoses()
                     if d.plugin == "fake_sloppy")
    assert reasons == sorted([
        "plait_register_blocks: fake_sloppy.NotABlock is not a plait.blocks.Block subclass",
        "plait_register_blocks: returned dict; return a list",
        "plait_register_tasks: <function plain_function at ADDR> is not a plait task "
        "(decorate the function with @task)",
        "plait_register_tasks: Flow('a-flow') is not a plait task (decorate the function with @task)",
        "plait_register_flows: Task('a_task') is not a plait flow (decorate the function with @flow)",
        "plait_register_infrastructure: Fine is not an infrastructure block "
        "(subclass plait.blocks.InfrastructureBlock: the run-infrastructure capability and a run() method)",
        "plait_register_storage: the factory for 'bad' is not callable (give a function url -> storage)",
        "plait_register_storage: 'x' is not a URL scheme (two or more letters, digits, '+', '-' or '.', e.g. 's3')",
    ])
    # what is valid still counts
    assert plugins.block_classes()["fine"].__name__ == "Fine"
    assert [t.name for owner, t in plugins.registered_tasks() if owner == "fake_sloppy"] == ["a_task"]
    assert [f.name for owner, f in plugins.registered_flows() if owner == "fake_sloppy"] == ["a-flow"]
    kinds = plugins.infrastructure_kinds()
    assert kinds["runner"].__name__ == "Runner" and "fake" not in kinds
    assert plugins.storage_factory("okay") is not None and plugins.storage_factory("bad") is None


def test_plait_register_blocks_through_the_register_callback_of_plait_0_1(site):
    make_distribution(site, "fake-legacy", textwrap.dedent(
        '''
        from plait import task
        from plait.blocks import Block
        from plait.hookspecs import hookimpl

        class Legacy(Block):
            """Registered the plait 0.1 way."""

        @task
        def legacy_task():
            return 1

        @hookimpl
        def plait_register_blocks(register):
            register(Legacy)

        @hookimpl
        def plait_register_tasks(register):
            register(legacy_task, name="legacy")

        @hookimpl
        def plait_register_storage(register):
            register("legacy", lambda url: None)
        '''
    ))
    assert plugins.block_classes()["legacy"].__name__ == "Legacy"
    assert [t.name for owner, t in plugins.registered_tasks() if owner == "fake_legacy"] == ["legacy_task"]
    assert plugins.storage_factory("legacy") is not None
    assert [d for d in plugins.diagnoses() if d.plugin == "fake_legacy"] == []


# -- default plugins ------------------------------------------------------------------------------
def test_builtins_are_a_default_plugin_loaded_once_by_module_name(site, monkeypatch):
    from importlib import metadata

    assert plugins.DEFAULT_PLUGINS == {"plait_blocks": "plait_blocks.plugin"}
    # plait's own metadata still names it (for tools that read metadata), yet it loads once
    assert "plait_blocks.plugin" in {ep.value for ep in metadata.entry_points(group="plait.plugins")}
    names = [name for name, _ in plugins.get_plugin_manager().list_name_plugin()]
    assert names.count("plait_blocks") == 1
    monkeypatch.setenv("PLAIT_PLUGINS", "plait_aws")
    plugins.reset_plugins()
    assert plugins.block_class("local-file-system").__name__ == "LocalFileSystem"
    assert plugins.infrastructure_class("process").__name__ == "Process"
    assert plugins.lifecycle_observers()[0]
    assert "plait_blocks" in {impl.plugin_name for impl in plugins.hook_caller("plait_notify").get_hookimpls()}


def test_core_never_imports_a_plugin_by_name():
    pattern = re.compile(r"^\s*(from|import)\s+plait_", re.MULTILINE)
    core = ROOT / "core" / "plait"
    offenders = [str(p.relative_to(ROOT)) for p in core.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


# -- reset ---------------------------------------------------------------------------------------
def test_reset_plugins_clears_the_storages_built_from_plugin_schemes(site, monkeypatch):
    from plait.results import resolve_storage

    make_distribution(site, "fake-creds", textwrap.dedent(
        '''
        import os
        from plait.hookspecs import hookimpl

        class Bucket:
            def __init__(self, url):
                self.url, self.credentials = url, os.environ.get("FAKE_BUCKET_KEY")

            def read_path(self, path):
                raise FileNotFoundError(path)

            def write_path(self, path, content):
                pass

        @hookimpl
        def plait_register_storage():
            return {"creds": Bucket}
        '''
    ))
    monkeypatch.delenv("FAKE_BUCKET_KEY", raising=False)
    first = resolve_storage("creds://bucket/prefix")
    assert first.credentials is None and resolve_storage("creds://bucket/prefix") is first  # built once
    monkeypatch.setenv("FAKE_BUCKET_KEY", "k-123")  # e.g. a default credentials block saved since
    plugins.reset_plugins()
    again = resolve_storage("creds://bucket/prefix")
    assert again is not first and again.credentials == "k-123"


# -- the registry builder describes plugins the way plait loads them ------------------------------
def test_registry_describes_returned_contributions_and_refuses_invalid_ones():
    import types

    from plait.blocks import Block
    from plait.registry._describe import _Invalid, describe_modules

    class Described(Block):
        """A block the registry lists."""

    good = types.ModuleType("fake_described")
    good.plait_register_blocks = hookspecs.hookimpl(lambda: [Described])
    good.plait_register_storage = hookspecs.hookimpl(lambda: {"described": lambda url: None})
    contents = describe_modules({"fake_described": good})
    assert [b["slug"] for b in contents["blocks"]] == ["described"] and contents["storage_schemes"] == ["described"]
    assert contents["hooks"] == ["plait_register_blocks", "plait_register_storage"]

    bad = types.ModuleType("fake_undescribable")
    bad.plait_register_tasks = hookspecs.hookimpl(lambda: [lambda: 1])
    with pytest.raises(_Invalid, match=r"plait_register_tasks of fake_undescribable: <function .*> is not a plait task"):
        describe_modules({"fake_undescribable": bad})
