"""plait.testing.CollectionSuite catches what is wrong with a collection, and says how to fix it.

Each test builds a small collection in tmp_path — a package, its pyproject.toml, README.md
and the installed metadata (a ``.dist-info`` directory on sys.path, as pip writes it) — breaks
one thing, and calls the suite's checks on it. The last tests run the suite under pytest, in
a fresh interpreter, on the collection docs/collections/writing-a-collection.md builds.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import textwrap
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from plait import plugins
from plait.testing import BLOCK_CONFORMANCE_CHECKS, CollectionSuite

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "collections" / "writing-a-collection.md"

FILES = {
    "PKG/__init__.py": '''
        """A collection made up for the suite's tests."""

        from PKG.blocks import FakeNote
        from PKG.tasks import jot, journal

        __all__ = ["FakeNote", "jot", "journal"]
    ''',
    "PKG/blocks.py": '''
        """The block."""

        from __future__ import annotations

        from typing import ClassVar

        from pydantic import Field, SecretStr

        from plait.blocks import Block


        class FakeNote(Block):
            """A note, with a token to post it."""

            block_type_slug: ClassVar[str] = "SLUG"
            text: str = Field(description="What to remember.")
            token: SecretStr | None = Field(None, description="The token that posts it.")
            code_example: ClassVar[str] = 'FakeNote(text="hi").save("note")'
    ''',
    "PKG/tasks.py": '''
        """The task and the flow."""

        from plait import flow, task


        @task
        def jot(text: str) -> str:
            """Write a note down."""
            return text.upper()


        @flow
        def journal(texts: list[str]) -> list[str]:
            """Write every note down."""
            return [jot(text) for text in texts]
    ''',
    "PKG/plugin.py": '''
        """Registers the block, the task and the flow."""

        from plait.hookspecs import hookimpl
        from PKG.blocks import FakeNote
        from PKG.tasks import jot, journal


        @hookimpl
        def plait_register_blocks():
            return [FakeNote]


        @hookimpl
        def plait_register_tasks():
            return [jot]


        @hookimpl
        def plait_register_flows():
            return [journal]
    ''',
    "PKG/py.typed": "",
    "README.md": '''
        # A fake collection

        ```python
        from PKG import journal

        print(journal(["a", "b"]))  # ['A', 'B']
        ```
    ''',
}
ENTRY_POINTS = {
    "plait.plugins": {"PKG": "PKG.plugin"},
    "plait.block_types": {"SLUG": "PKG.plugin"},
    "plait.hooks": {"plait_register_tasks": "PKG.plugin", "plait_register_flows": "PKG.plugin"},
}


@dataclass
class Fake:
    """A collection written to disk and importable: its package name, directory and slug."""

    name: str
    root: Path
    slug: str

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(self.name)

    def suite(self, **attributes: Any) -> type[CollectionSuite]:
        """A CollectionSuite subclass for this collection (attributes override the defaults)."""
        module = self.module
        defaults: dict[str, Any] = {
            "package": module, "root": self.root, "docs": ["README.md"],
            "examples": {module.FakeNote: [module.FakeNote(text="hi", token="tok-s3cr3t-value")]},
        }
        return type("TestFake", (CollectionSuite,), {**defaults, **attributes})


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def _pyproject(name: str, version: str, requires: list[str], entry_points: dict[str, dict[str, str]]) -> str:
    lines = ["[project]", f'name = "{name}"', f'version = "{version}"', "dependencies = ["]
    lines += [f'    "{r}",' for r in requires] + ["]", ""]
    for group, entries in entry_points.items():
        lines.append(f'[project.entry-points."{group}"]')
        lines += [f'{key} = "{value}"' for key, value in entries.items()] + [""]
    return "\n".join(lines)


def entry_points_txt(points: dict[str, dict[str, str]]) -> str:
    """The installed form of pyproject's entry-point tables (a .dist-info's entry_points.txt)."""
    return "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()) + "\n"
                   for group, entries in points.items())


@pytest.fixture
def make_collection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Fake]]:
    """``make_collection(files={...}, entry_points=..., requires=[...])``: a new collection,
    installed (its directory is on sys.path and PYTHONPATH). ``None`` as a file's text
    deletes that file; ``PKG`` and ``SLUG`` in names and texts are the package and slug."""
    made: list[str] = []

    def make(files: dict[str, str | None] | None = None, entry_points: dict[str, dict[str, str]] | None = None,
             requires: list[str] | None = None, pyproject_version: str = "0.1.0") -> Fake:
        name = f"plait_fake{uuid.uuid4().hex[:8]}"
        slug = name.replace("_", "-") + "-note"
        dist = name.replace("_", "-")
        root = tmp_path / dist
        fill = lambda text: text.replace("PKG", name).replace("SLUG", slug)  # noqa: E731
        for rel, text in {**FILES, **(files or {})}.items():
            if text is not None:
                _write(root / fill(rel), fill(text))
        points = {group: {fill(k): fill(v) for k, v in entries.items()}
                  for group, entries in (ENTRY_POINTS if entry_points is None else entry_points).items()}
        requires = ["plait>=0.1,<0.2"] if requires is None else requires
        _write(root / "pyproject.toml", _pyproject(dist, pyproject_version, requires, points))
        info = root / f"{name}-0.1.0.dist-info"
        _write(info / "METADATA", "Metadata-Version: 2.1\n" + f"Name: {dist}\nVersion: 0.1.0\n"
               + "".join(f"Requires-Dist: {r}\n" for r in requires))
        _write(info / "entry_points.txt", entry_points_txt(points))
        monkeypatch.syspath_prepend(str(root))
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
        importlib.invalidate_caches()
        plugins.reset_plugins()
        made.append(name)
        return Fake(name, root, slug)

    yield make
    for name in list(sys.modules):
        if any(name == m or name.startswith(m + ".") for m in made):
            del sys.modules[name]
    monkeypatch.undo()
    importlib.invalidate_caches()
    plugins.reset_plugins()


def line_of(fake: Fake, module: str, text: str) -> int:
    """The line of the package's ``module`` that holds ``text``."""
    lines = (fake.root / fake.name / module).read_text().splitlines()
    return next(number for number, line in enumerate(lines, start=1) if text in line)


def failure(check: Callable[..., None], *args: Any) -> str:
    """The message of the AssertionError ``check(*args)`` raises (failing when it raises none)."""
    with pytest.raises(AssertionError) as raised:
        check(*args)
    return str(raised.value)


def run_every_check(suite: type[CollectionSuite], tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Call every check of the suite the way pytest would, parametrised ones once per value."""
    instance = suite()
    checks = [name for name in dir(suite) if name.startswith("test_")]
    assert len(checks) == 13, checks  # a new check needs a test here
    for name in checks:
        method = getattr(instance, name)
        if name == "test_block_conforms":
            for pair in suite._example_pairs():
                method(pair)
        elif name == "test_docs_examples_run":
            for number, page in enumerate(suite.docs):
                method(page, tmp_path / f"docs-{number}", request)
        else:
            method()


# -- a collection that keeps every convention ---------------------------------------------------
def test_a_collection_that_keeps_the_conventions_passes(make_collection, tmp_path, request) -> None:
    fake = make_collection()
    run_every_check(fake.suite(tasks=["jot"], flows=[fake.module.journal], exports=["FakeNote", "jot", "journal"],
                               requires_plait=">=0.1,<0.2", optional_imports=("json",)), tmp_path, request)


# -- the plugin -----------------------------------------------------------------------------------
def test_a_plugin_nobody_declares_is_reported_with_the_entry_point_to_add(make_collection) -> None:
    suite = make_collection().suite(plugin="plait_not_there")
    message = failure(suite().test_plugin_is_discovered_and_healthy)
    assert "no plugin 'plait_not_there' was discovered" in message
    assert '[project.entry-points."plait.plugins"]' in message and "reinstall" in message


def test_a_plugin_that_fails_to_import_is_not_healthy(make_collection) -> None:
    fake = make_collection({"PKG/plugin.py": 'raise RuntimeError("boom at import")\n'})
    message = failure(fake.suite()().test_plugin_is_discovered_and_healthy)
    assert f"plugin {fake.name} is not healthy" in message
    assert "'failed', not loaded" in message and "boom at import" in message and "Fix:" in message
    assert "did not load" in failure(fake.suite()().test_declarations_match_registrations)


def test_a_plugin_for_another_plait_is_not_healthy(make_collection) -> None:
    fake = make_collection(requires=["plait>=9,<10"])
    message = failure(fake.suite()().test_plugin_is_discovered_and_healthy)
    assert "it is 'incompatible', not loaded" in message and "supports plait<10,>=9" in message
    assert f"plugin '{fake.name}' is incompatible" in failure(fake.suite()().test_every_block_type_has_an_example)


def test_a_plait_range_without_upper_bound_or_not_the_locked_one_fails(make_collection) -> None:
    open_ended = make_collection(requires=["plait>=0.1"])
    message = failure(open_ended.suite()().test_plugin_is_discovered_and_healthy)
    assert "has no upper bound" in message and '"plait>=0.1,<0.2"' in message
    other = make_collection(requires=["plait>=0.0,<0.2"])
    message = failure(other.suite(requires_plait=">=0.1,<0.2")().test_plugin_is_discovered_and_healthy)
    assert "plait range is '<0.2,>=0.0', not '>=0.1,<0.2'" in message
    other.suite(requires_plait="<0.2,>=0.0")().test_plugin_is_discovered_and_healthy()  # order does not matter
    none = make_collection(requires=[])
    assert "names no plait range" in failure(none.suite()().test_plugin_is_discovered_and_healthy)


def test_an_installed_copy_older_than_pyproject_says_reinstall(make_collection) -> None:
    fake = make_collection(pyproject_version="0.2.0")
    message = failure(fake.suite()().test_installed_metadata_matches_pyproject)
    assert "pyproject.toml says version '0.2.0', the installed metadata '0.1.0'" in message
    assert "reinstall it (pip install -e" in message
    pyproject = fake.root / "pyproject.toml"
    text = pyproject.read_text().replace('version = "0.2.0"', 'version = "0.1.0"')
    pyproject.write_text(text + f'\n[project.entry-points."plait.storage_schemes"]\nfake = "{fake.name}.plugin"\n')
    message = failure(fake.suite()().test_installed_metadata_matches_pyproject)
    assert '[project.entry-points."plait.storage_schemes"] differs from the installed metadata' in message
    assert tomllib.loads(pyproject.read_text())["project"]["version"] == "0.1.0"


# -- declarations ---------------------------------------------------------------------------------
def test_an_undeclared_block_type_is_reported_with_the_line_to_add(make_collection) -> None:
    memo = '''
        from typing import ClassVar

        from pydantic import Field

        from plait.blocks import Block


        class FakeMemo(Block):
            """A memo."""

            block_type_slug: ClassVar[str] = "SLUG-memo"
            text: str = Field(description="The memo.")
            code_example: ClassVar[str] = 'FakeMemo(text="x")'
    '''
    plugin = FILES["PKG/plugin.py"].replace("from PKG.tasks", "from PKG.memo import FakeMemo\n        from PKG.tasks")
    plugin = plugin.replace("return [FakeNote]", "return [FakeNote, FakeMemo]")
    fake = make_collection({"PKG/memo.py": memo, "PKG/plugin.py": plugin})
    message = failure(fake.suite()().test_declarations_match_registrations)
    assert f"block type '{fake.slug}-memo' is registered but not declared" in message
    assert f'add {fake.slug}-memo = "{fake.name}.plugin" to [project.entry-points."plait.block_types"]' in message
    # plait itself diagnoses it too, and the memo has no example
    assert "without declaring it" in failure(fake.suite()().test_plugin_is_discovered_and_healthy)
    message = failure(fake.suite()().test_every_block_type_has_an_example)
    assert f"block type '{fake.slug}-memo' (FakeMemo) has no example" in message
    assert "add `FakeMemo: [FakeMemo(...)]` to TestFake.examples" in message


def test_a_declared_block_type_the_plugin_does_not_register_fails(make_collection) -> None:
    points = {**ENTRY_POINTS, "plait.block_types": {"SLUG": "PKG.plugin", "SLUG-ghost": "PKG.plugin"}}
    fake = make_collection(entry_points=points)
    message = failure(fake.suite()().test_declarations_match_registrations)
    assert f"block type '{fake.slug}-ghost' is declared in plait.block_types but not registered" in message
    assert "return it from plait_register_blocks" in message
    optional = {**ENTRY_POINTS, "plait.block_types": {"SLUG": "PKG.plugin", "SLUG-ghost": "PKG.plugin [extra]"}}
    make_collection(entry_points=optional).suite()().test_declarations_match_registrations()  # optional: fine


def test_hooks_implemented_but_not_declared_or_declared_but_missing_fail(make_collection) -> None:
    points = {**ENTRY_POINTS, "plait.hooks": {"plait_register_tasks": "PKG.plugin", "plait_notify": "PKG.plugin"}}
    message = failure(make_collection(entry_points=points).suite()().test_declarations_match_registrations)
    assert "hook plait_register_flows is implemented but not declared" in message
    assert "hook plait_notify is declared in plait.hooks but" in message and "does not implement it" in message


def test_a_collection_that_declares_nothing_is_told_to(make_collection) -> None:
    fake = make_collection(entry_points={"plait.plugins": ENTRY_POINTS["plait.plugins"]})
    message = failure(fake.suite()().test_declarations_match_registrations)
    assert "declares nothing it provides" in message and "plait.block_types" in message


# -- blocks ---------------------------------------------------------------------------------------
def test_a_missing_example_or_one_for_an_unregistered_class_fails(make_collection) -> None:
    fake = make_collection()
    message = failure(fake.suite(examples={})().test_every_block_type_has_an_example)
    assert f"block type '{fake.slug}' (FakeNote) has no example" in message

    from plait_blocks import JSON

    message = failure(fake.suite(examples={
        fake.module.FakeNote: [JSON(value={})], JSON: [JSON(value=1)]})().test_every_block_type_has_an_example)
    assert "JSON has an example but" in message and "does not register it" in message
    assert "examples[FakeNote] holds a JSON" in message


def test_an_example_that_does_not_conform_fails_with_the_conformance_report(make_collection) -> None:
    blocks = FILES["PKG/blocks.py"].replace('text: str = Field(description="What to remember.")', "text: str")
    fake = make_collection({"PKG/blocks.py": blocks})
    suite = fake.suite()
    [pair] = suite._example_pairs()
    message = failure(suite().test_block_conforms, pair)
    assert "[field-descriptions] field(s) without a description: text" in message and "Fix:" in message


def test_conformance_checks_can_leave_a_check_out_for_one_example(make_collection) -> None:
    fake = make_collection()
    plain = fake.module.FakeNote(text="no token")
    assert "sets none of the secret fields" in failure(fake.suite()().test_block_conforms, (type(plain), plain))

    class WithoutMasking(fake.suite()):  # type: ignore[misc]
        def conformance_checks(self, example):
            return [c for c in BLOCK_CONFORMANCE_CHECKS if c != "secrets-masked"] if example is plain else None

    WithoutMasking().test_block_conforms((type(plain), plain))


# -- tasks and flows ------------------------------------------------------------------------------
def test_a_registered_task_that_is_not_a_plait_task_fails(make_collection) -> None:
    tasks = FILES["PKG/tasks.py"] + '''

        class LooksLikeATask:
            name = "impostor"

            def fn(self): ...
            def submit(self): ...
            def map(self): ...


        impostor = LooksLikeATask()
    '''
    plugin = FILES["PKG/plugin.py"].replace("import jot, journal", "import impostor, jot, journal")
    fake = make_collection({"PKG/tasks.py": tasks, "PKG/plugin.py": plugin.replace("[jot]", "[jot, impostor]")})
    message = failure(fake.suite()().test_registered_tasks_are_plait_tasks)
    assert "is registered as a task but is not a plait.Task" in message and "make it with @task" in message


def test_the_listed_tasks_and_flows_must_be_the_registered_ones(make_collection) -> None:
    fake = make_collection()
    message = failure(fake.suite(tasks=["jot", "scribble"])().test_registered_tasks_are_plait_tasks)
    assert "task 'scribble' is not registered" in message
    message = failure(fake.suite(flows=[])().test_registered_flows_are_plait_flows)
    assert "flow 'journal' is registered but not in the suite's flows" in message
    from plait import flow

    other = flow(name="journal")(lambda: None)
    message = failure(fake.suite(flows=[other])().test_registered_flows_are_plait_flows)
    assert "the registered flow 'journal' is another object" in message


# -- the public API -------------------------------------------------------------------------------
def test_all_must_be_the_public_namespace(make_collection) -> None:
    init = FILES["PKG/__init__.py"].replace('__all__ = ["FakeNote", "jot", "journal"]',
                                            'helper = 1\n\n        __all__ = ["FakeNote", "jot", "journal", "gone"]')
    fake = make_collection({"PKG/__init__.py": init})
    message = failure(fake.suite()().test_all_names_the_public_namespace)
    assert "'gone' is in __all__ but" in message and "does not define it" in message
    assert "'helper' is public" in message and "not in __all__" in message
    good = make_collection()
    message = failure(good.suite(exports=["FakeNote", "jot", "journal", "extra"])().test_all_names_the_public_namespace)
    assert "'extra' is no longer in __all__" in message
    message = failure(good.suite(exports=["FakeNote", "jot"])().test_all_names_the_public_namespace)
    assert "'journal' was added to __all__" in message


def test_what_is_registered_must_be_exported(make_collection) -> None:
    init = FILES["PKG/__init__.py"].replace("import jot, journal", "import journal").replace('"jot", ', "")
    suite = make_collection({"PKG/__init__.py": init}).suite()
    message = failure(suite().test_registered_blocks_tasks_and_flows_are_exported)
    assert "task 'jot' is registered but not exported" in message and "add it to __all__" in message


def test_private_imports_are_reported_with_file_and_line(make_collection) -> None:
    blocks = FILES["PKG/blocks.py"].replace(
        "from plait.blocks import Block", "from plait import _engine  # noqa\n"
        "        from plait._masking import register_secret  # noqa\n        from plait.blocks import Block")
    fake = make_collection({"PKG/blocks.py": blocks})
    message = failure(fake.suite()().test_only_plaits_public_api_is_imported)
    engine, masking = line_of(fake, "blocks.py", "_engine"), line_of(fake, "blocks.py", "_masking")
    assert f"{fake.name}/blocks.py:{engine} imports _engine from plait, a private name" in message
    assert f"{fake.name}/blocks.py:{masking} imports plait._masking, which is not plait's public API" in message
    assert "`plait.blocks`" in message  # the fix lists the public modules


def test_a_collection_imported_without_depending_on_it_fails(make_collection) -> None:
    tasks = FILES["PKG/tasks.py"].replace("from plait import flow, task", "import plait_sqlalchemy  # noqa\n"
                                          "        from plait import flow, task")
    fake = make_collection({"PKG/tasks.py": tasks})
    message = failure(fake.suite()().test_only_plaits_public_api_is_imported)
    assert "imports plait_sqlalchemy, but" in message and "does not depend on plait-sqlalchemy" in message
    requires = ["plait>=0.1,<0.2", "plait-sqlalchemy; extra == 'sql'"]
    declared = make_collection({"PKG/tasks.py": tasks}, requires=requires)
    declared.suite()().test_only_plaits_public_api_is_imported()


def test_optional_packages_may_be_imported_only_inside_functions(make_collection) -> None:
    tasks = FILES["PKG/tasks.py"] + '''

        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            import csv  # only for type checkers: fine


        def later():
            import csv  # imported when called: fine
            return csv


        class Holder:
            import csv  # a class body runs at import
    '''
    fake = make_collection({"PKG/tasks.py": tasks})
    message = failure(fake.suite(optional_imports=("csv",))().test_only_plaits_public_api_is_imported)
    where = f"{fake.name}/tasks.py:{line_of(fake, 'tasks.py', 'a class body')}"
    assert message.count("imports csv when the module is imported") == 1 and where in message
    assert "import it inside the function that needs it" in message


# -- modules --------------------------------------------------------------------------------------
def test_a_long_module_and_a_missing_py_typed_fail(make_collection) -> None:
    fake = make_collection({"PKG/long.py": "x = 1\n" * 500, "PKG/py.typed": None})
    message = failure(fake.suite()().test_modules_stay_small)
    assert f"{fake.name}/long.py has 500 lines (the limit is 499)" in message and "split it" in message
    fake.suite(max_module_lines=501)().test_modules_stay_small()
    message = failure(fake.suite()().test_package_is_typed)
    assert "py.typed is missing" in message and "create it empty" in message


# -- docs -----------------------------------------------------------------------------------------
def test_a_docs_example_that_fails_or_prints_something_else_is_reported(make_collection, tmp_path, request) -> None:
    readme = FILES["README.md"].replace("# ['A', 'B']", "# ['a', 'b']")
    fake = make_collection({"README.md": readme})
    message = failure(fake.suite()().test_docs_examples_run, "README.md", tmp_path / "one", request)
    assert "README.md example 1 (line 3) prints \"['A', 'B']\", but the page says \"['a', 'b']\"" in message
    broken = make_collection({"README.md": readme.replace("from PKG import journal", "from PKG import nothing")})
    message = failure(broken.suite()().test_docs_examples_run, "README.md", tmp_path / "two", request)
    assert "README.md example 1 (line 3) failed (exit code 1)" in message and "ImportError" in message
    none = make_collection({"README.md": "# no examples\n"})
    assert "has no ```python example" in failure(none.suite()().test_docs_examples_run, "README.md", tmp_path, request)


def test_docs_examples_share_a_home_and_can_be_prepared(make_collection, tmp_path, request) -> None:
    readme = '''
        ```python
        from PKG import FakeNote

        FakeNote(text="saved first").save("first")
        ```

        ```python
        from PKG import FakeNote

        print(FakeNote.load("first").text, MARK)  # saved first prepared
        ```
    '''
    fake = make_collection({"README.md": readme})

    class Prepared(fake.suite()):  # type: ignore[misc]
        def docs_script(self, code, request):
            return f"import os\nMARK = os.environ['FAKE_MARK']\n{code}"

        def docs_env(self, request):
            return {"FAKE_MARK": "prepared"}

    Prepared().test_docs_examples_run("README.md", tmp_path, request)
    assert "FAKE_MARK" not in os.environ


def test_a_mistyped_page_fails_and_a_page_outside_the_checkout_skips(make_collection, tmp_path, request) -> None:
    suite = make_collection().suite()
    message = failure(suite().test_docs_examples_run, "READ_ME.md", tmp_path, request)
    assert "docs lists 'READ_ME.md', but there is no" in message and "correct the path" in message
    with pytest.raises(pytest.skip.Exception, match="is not here"):
        suite().test_docs_examples_run("../../docs/collections/plait-fake.md", tmp_path, request)


# -- under pytest ---------------------------------------------------------------------------------
def test_the_guides_suite_example_runs_under_pytest(tmp_path: Path) -> None:
    """The guide's plait-hello collection, installed, passes the guide's CollectionSuite
    example; with an example taken away it fails, saying which."""
    text = GUIDE.read_text(encoding="utf-8")
    files = dict(re.findall(r"```(?:python|toml)\n# file: (\S+)\n(.*?)```", text, flags=re.S))
    [suite_example] = re.findall(r"```python\n# test file: (\S+)\n(.*?)```", text, flags=re.S)
    files[suite_example[0]] = suite_example[1]
    root = tmp_path / "checkout"
    for rel, body in files.items():
        _write(root / "collections" / rel, body)
    hello = root / "collections" / "plait-hello"
    (hello / "plait_hello" / "py.typed").touch()
    _write(hello / "README.md", "# plait-hello\n\n```python\nfrom plait_hello import welcome\n\n"
           'print(welcome(["Ada"]))  # [\'Hello, Ada!\']\n```\n')
    _write(root / "docs" / "collections" / "plait-hello.md", "# plait-hello\n\n```python\n"
           "from plait_hello import greet\n\nprint(greet.fn('Grace'))  # Hello, Grace!\n```\n")
    project = tomllib.loads((hello / "pyproject.toml").read_text())["project"]
    info = hello / "plait_hello-0.1.0.dist-info"
    _write(info / "METADATA", "Metadata-Version: 2.1\nName: plait-hello\nVersion: 0.1.0\n"
           + "".join(f"Requires-Dist: {r}\n" for r in project["dependencies"]))
    _write(info / "entry_points.txt", entry_points_txt(project["entry-points"]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PYTHONPATH=str(hello), PLAIT_HOME=str(tmp_path / "home"), PLAIT_LOG_TO_CONSOLE="false")
    test_file = Path(suite_example[0]).relative_to("plait-hello")

    def pytest_run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-p", "no:randomly",
             "--import-mode=importlib", str(test_file)],
            cwd=hello, env=env, capture_output=True, text=True, timeout=300,
        )

    done = pytest_run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "14 passed" in done.stdout, done.stdout
    for test_id in ("test_block_conforms[greeting]", "test_docs_examples_run[README.md]",
                    "test_docs_examples_run[plait-hello.md]", "test_plugin_is_discovered_and_healthy"):
        assert re.search(rf"::{re.escape(test_id)} PASSED", done.stdout), (test_id, done.stdout)

    suite_file = hello / test_file
    suite_file.write_text(re.sub(r"examples = \{.*?\}\n", "examples = {}\n", suite_file.read_text(), flags=re.S))
    done = pytest_run()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED" in done.stdout and "test_every_block_type_has_an_example" in done.stdout
    assert "block type 'greeting' (Greeting) has no example" in done.stdout
