"""The collection suite: every convention a collection must keep, as one class to subclass.

    from plait.testing import CollectionSuite

    import my_collection  # the collection's package, e.g. plait-hello's
    from my_collection import Greeting

    class TestMyCollection(CollectionSuite):
        package = my_collection
        examples = {Greeting: [Greeting(salutation="Hi")]}
        docs = ["README.md", "../../docs/collections/plait-hello.md"]

pytest collects the ``test_*`` methods the subclass inherits: the plugin is discovered and
healthy, what its distribution declares is what it registers, every block type has an
example that passes ``assert_block_conforms``, registered tasks and flows are plait's and
exported, ``__all__`` names the public namespace, only plait's public API is imported,
modules stay small, ``py.typed`` ships, and the docs pages' ``python`` examples run. Each
failure names what is wrong and how to fix it. What differs between collections is a class
attribute or a method to override (``conformance_checks``, ``docs_script``, ``docs_env``).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import pytest

    from plait._plugin_state import _Plugin
    from plait.blocks import Block

__all__ = ["CollectionSuite", "PLAIT_PUBLIC_MODULES"]

#: The modules of plait a collection may import (docs/collections/writing-a-collection.md).
PLAIT_PUBLIC_MODULES = frozenset({
    "plait", "plait.blocks", "plait.hookspecs", "plait.testing", "plait.results", "plait.exceptions", "plait.plugins",
    "plait.task_runners", "plait.external", "plait.artifacts", "plait.history",
})
# kind -> (what users call it, the Declared attribute, the Contributions attribute, the group, the hook)
_KINDS = (
    ("block type", "block_types", "blocks", "plait.block_types", "plait_register_blocks"),
    ("storage scheme", "storage_schemes", "storage", "plait.storage_schemes", "plait_register_storage"),
    ("infrastructure kind", "infrastructure", "infrastructure", "plait.infrastructure",
     "plait_register_infrastructure"),
    ("task runner", "task_runners", "task_runners", "plait.task_runners", "plait_register_task_runners"),
)
_IMPLIED_HOOKS = frozenset(kind[4] for kind in _KINDS)
_GROUPS = ("plait.block_types", "plait.storage_schemes", "plait.infrastructure", "plait.task_runners", "plait.hooks")
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", flags=re.S | re.M)
_EXPECTED_OUTPUT = re.compile(r"print\(.*\)\s+# (.*)$", flags=re.M)


def _fail(title: str, failures: Sequence[str]) -> None:
    """Raise one AssertionError listing every failure (each says what is wrong and the fix)."""
    if failures:
        raise AssertionError(f"{title}:\n" + "\n".join(f"  {line}" for line in failures))


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


class CollectionSuite:
    """Base class of a collection's convention tests; subclass it in a ``Test*`` class.

    Attributes:
        package: The collection's package (``import plait_aws``; required).
        examples: Block class -> example instance(s) with realistic values, secret fields
            set. Every block type the plugin registers needs one.
        docs: Markdown pages whose ```python blocks run, as scripts in order, sharing one
            fresh ``PLAIT_HOME`` and working directory. Paths are relative to ``root``.
            A ``print(...)  # text`` line says what the script's last output line must be.
        plugin: The entry-point name in ``plait.plugins`` (default: the package's name).
        distribution: The distribution's name (default: the package's, ``_`` -> ``-``).
        exports: When set, ``__all__`` must be exactly these names (locks the public API).
        tasks, flows: When set, the names (or the objects) of the tasks / flows the plugin
            must register, no more and no fewer.
        requires_plait: When set, the distribution's plait range must be exactly this.
        optional_imports: Top-level packages the collection may import only inside
            functions (optional extras, e.g. ``("pandas",)``).
        public_modules: The plait modules the collection may import.
        max_module_lines: Every module of the package stays under this many lines.
        docs_timeout: Seconds one docs example may run.
        root: The collection's directory (default: the parent of the test module's directory).
    """

    package: ClassVar[ModuleType]
    examples: ClassVar[Mapping[type[Block], Block | Sequence[Block]]] = {}
    docs: ClassVar[Sequence[str]] = ()
    plugin: ClassVar[str | None] = None
    distribution: ClassVar[str | None] = None
    exports: ClassVar[Collection[str] | None] = None
    tasks: ClassVar[Collection[Any] | None] = None
    flows: ClassVar[Collection[Any] | None] = None
    requires_plait: ClassVar[str | None] = None
    optional_imports: ClassVar[Collection[str]] = ()
    public_modules: ClassVar[frozenset[str]] = PLAIT_PUBLIC_MODULES
    max_module_lines: ClassVar[int] = 500
    docs_timeout: ClassVar[float] = 180
    root: ClassVar[Path | str | None] = None

    # -- what a subclass may override ------------------------------------------------------------
    def conformance_checks(self, example: Block) -> list[str] | None:
        """The conformance checks to run on ``example`` (names from ``BLOCK_CONFORMANCE_CHECKS``;
        None: all). Override to leave one out for an example it cannot apply to — e.g.
        ``secrets-masked`` for an example whose optional secrets are all unset."""
        return None

    def docs_script(self, code: str, request: pytest.FixtureRequest) -> str:
        """The script run for one ```python block of a docs page (default: the block as written).

        Override to put something in front of an example that needs a service, e.g. a block
        pointed at the test's emulator: ``request.getfixturevalue("fakesnow_port")``.
        """
        return code

    def docs_env(self, request: pytest.FixtureRequest) -> dict[str, str]:
        """Environment variables added for the docs examples (default: none)."""
        return {}

    # -- helpers ---------------------------------------------------------------------------------
    @classmethod
    def _package(cls) -> ModuleType:
        package = getattr(cls, "package", None)
        if not isinstance(package, ModuleType):
            raise AssertionError(f"{cls.__name__} has no package. Fix: set `package = <your package>` on the "
                                 "class (e.g. `import plait_hello` and `package = plait_hello`).")
        return package

    @classmethod
    def _package_dir(cls) -> Path:
        package = cls._package()
        paths = list(getattr(package, "__path__", []))
        if not paths:
            raise AssertionError(f"{package.__name__} is a module, not a package. Fix: make it a directory with "
                                 "an __init__.py (and py.typed).")
        return Path(paths[0])

    @classmethod
    def _plugin_name(cls) -> str:
        return cls.plugin or cls._package().__name__

    @classmethod
    def _distribution_name(cls) -> str:
        return cls.distribution or cls._package().__name__.replace("_", "-")

    @classmethod
    def _root(cls) -> Path:
        if cls.root is not None:
            return Path(cls.root)
        module = sys.modules.get(cls.__module__)
        where = getattr(module, "__file__", None)
        if where:
            return Path(where).resolve().parents[1]  # collections/<name>/tests/test_x.py -> collections/<name>
        return cls._package_dir().parent

    @classmethod
    def _example_pairs(cls) -> list[tuple[type[Block], Block]]:
        pairs: list[tuple[type[Block], Block]] = []
        for block_cls, given in cls.examples.items():
            pairs.extend((block_cls, example) for example in _as_list(given))
        return pairs

    def _loaded(self) -> _Plugin:
        """The plugin's record in the live plugin session, after importing every plugin."""
        from plait import _plugin_state, plugins

        plugins.load_all()
        name = self._plugin_name()
        record = _plugin_state.session().plugins.get(name)
        unusable = next((p for p in plugins.plugins() if p.name == name), None) if record is None else None
        if unusable is not None:
            raise AssertionError(f"plugin {name!r} is {unusable.status}. Fix: see the diagnoses that "
                                 "test_plugin_is_discovered_and_healthy (or `plait plugins ls`) shows.")
        if record is None:
            found = ", ".join(sorted(_plugin_state.session().plugins)) or "none"
            raise AssertionError(
                f"no plugin {name!r} was discovered (found: {found}). Fix: name it in pyproject.toml, "
                f'[project.entry-points."plait.plugins"] {name} = "{self._package().__name__}.plugin", and '
                f"reinstall the distribution (pip install -e <its directory>); check that PLAIT_PLUGINS, if set, "
                "lists it. (Set `plugin = ...` on the suite if the entry point has another name.)"
            )
        if record.status != "loaded":
            raise AssertionError(f"plugin {name!r} did not load (status {record.status!r}). Fix: see the diagnoses "
                                 "that test_plugin_is_discovered_and_healthy (or `plait plugins ls`) shows.")
        return record

    def _modules(self) -> Iterator[tuple[Path, str]]:
        """Every Python file of the package: (path, path relative to the package's parent)."""
        base = self._package_dir()
        for path in sorted(base.rglob("*.py")):
            yield path, path.relative_to(base.parent).as_posix()

    # -- pytest parametrisation ------------------------------------------------------------------
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Parametrise the per-example and per-page tests with the subclass's attributes."""
        if "block_example" in metafunc.fixturenames:
            pairs = self._example_pairs()
            counts: dict[type, int] = {}
            for block_cls, _ in pairs:
                counts[block_cls] = counts.get(block_cls, 0) + 1
            ids, seen = [], dict.fromkeys(counts, 0)
            for block_cls, _ in pairs:
                seen[block_cls] += 1
                slug = str(getattr(block_cls, "block_type_slug", None) or getattr(block_cls, "__name__", block_cls))
                ids.append(slug if counts[block_cls] == 1 else f"{slug}-{seen[block_cls]}")
            metafunc.parametrize("block_example", pairs, ids=ids)
        if "docs_page" in metafunc.fixturenames:
            pages = list(self.docs)
            metafunc.parametrize("docs_page", pages, ids=[Path(p).name for p in pages])

    # -- the plugin ------------------------------------------------------------------------------
    def test_plugin_is_discovered_and_healthy(self) -> None:
        """Discovered from its entry point, loaded, from its distribution, with a plait range
        and no diagnoses once every plugin is imported."""
        from plait import plugins
        from plait._plugin_discovery import plait_version

        plugins.reset_plugins()
        plugins.load_all()
        name, distribution = self._plugin_name(), self._distribution_name()
        info = next((p for p in plugins.plugins() if p.name == name), None)
        if info is None:
            self._loaded()  # raises: says how to declare the entry point
            return
        failures = []
        if info.status != "loaded":
            failures.append(f"it is {info.status!r}, not loaded (the diagnoses below say why). Fix: make "
                            f"{info.module} importable and compatible with plait {plait_version()}.")
        if info.distribution is None or _canonical(info.distribution) != _canonical(distribution):
            failures.append(f"it comes from distribution {info.distribution!r}, not {distribution!r}. Fix: declare "
                            f"the entry point in {distribution}'s pyproject.toml (or set `distribution = ...`).")
        if not info.requires_plait:
            failures.append(f'{distribution} names no plait range. Fix: add "plait>=X,<Y" to [project] '
                            "dependencies in pyproject.toml and reinstall.")
        elif "<" not in info.requires_plait:
            failures.append(f"{distribution}'s plait range {info.requires_plait!r} has no upper bound. Fix: pin "
                            'the next minor version, e.g. "plait>=0.1,<0.2".')
        elif self.requires_plait is not None and not _same_range(info.requires_plait, self.requires_plait):
            failures.append(f"{distribution}'s plait range is {info.requires_plait!r}, not {self.requires_plait!r}. "
                            f"Fix: change the plait dependency in pyproject.toml (and reinstall), or "
                            f"{type(self).__name__}.requires_plait on purpose.")
        for diagnosis in plugins.diagnoses():
            if diagnosis.plugin in (name, distribution):
                failures.append(f"diagnosis: {diagnosis.reason}. Fix: {diagnosis.fix}.")
        _fail(f"plugin {name} is not healthy", failures)

    def test_installed_metadata_matches_pyproject(self) -> None:
        """The installed distribution is the collection's pyproject.toml as it is now: name,
        version, plait range and every plait entry point (metadata is written at install time)."""
        import tomllib
        from importlib import metadata

        import pytest

        pyproject = self._root() / "pyproject.toml"
        if not pyproject.is_file():
            pytest.skip(f"{pyproject} is not here (the collection is tested from an installed copy)")
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        distribution = self._distribution_name()
        reinstall = f"Fix: reinstall it (pip install -e {self._root()})."
        try:
            installed = metadata.distribution(distribution)
        except metadata.PackageNotFoundError:
            raise AssertionError(f"distribution {distribution!r} is not installed. {reinstall}") from None
        failures = []
        if _canonical(str(project.get("name", ""))) != _canonical(distribution):
            failures.append(f"{pyproject} names the project {project.get('name')!r}, not {distribution!r}. Fix: use "
                            "the collection's directory name, or set `distribution = ...` on the suite.")
        if project.get("version") != installed.version:
            failures.append(f"pyproject.toml says version {project.get('version')!r}, the installed metadata "
                            f"{installed.version!r}. {reinstall}")
        wanted_range = _plait_range(project.get("dependencies", []))
        installed_range = _plait_range(installed.requires or [])
        if not _same_range(wanted_range, installed_range):
            failures.append(f"pyproject.toml's plait range is {wanted_range!r}, the installed one "
                            f"{installed_range!r}. {reinstall}")
        tables = project.get("entry-points", {})
        for group in ["plait.plugins", *_GROUPS]:
            written = {name: " ".join(str(value).split()) for name, value in tables.get(group, {}).items()}
            live = {ep.name: " ".join(ep.value.split()) for ep in installed.entry_points if ep.group == group}
            if written != live:
                failures.append(f"[project.entry-points.\"{group}\"] differs from the installed metadata "
                                f"(pyproject.toml: {sorted(written)}, installed: {sorted(live)}). {reinstall}")
        _fail(f"the installed {distribution} is not its pyproject.toml", failures)

    def test_declarations_match_registrations(self) -> None:
        """What the distribution declares (block types, storage schemes, infrastructure,
        hooks) is exactly what the plugin registers and implements."""
        record = self._loaded()
        declared, got = record.candidate.declared, record.contributions
        module, distribution = record.candidate.module, self._distribution_name()
        reinstall = "then reinstall the distribution (metadata is written at install time)"
        if not declared:
            raise AssertionError(
                f"{distribution} declares nothing it provides, so plait imports {module} on every command. Fix: "
                "list its block types, storage schemes, infrastructure kinds and other hooks in the "
                '[project.entry-points."plait.block_types" / "plait.storage_schemes" / "plait.infrastructure" / '
                f'"plait.hooks"] tables of pyproject.toml (values: "{module}"), {reinstall}.'
            )
        failures = []
        for label, declared_attr, got_attr, group, hook in _KINDS:
            names: dict[str, bool] = getattr(declared, declared_attr)
            registered = set(getattr(got, got_attr))
            for name in sorted(n for n, optional in names.items() if not optional and n not in registered):
                failures.append(f"{label} {name!r} is declared in {group} but not registered. Fix: return it from "
                                f"{hook} in {module}, or remove the declaration (write \"{module} [extra]\" if an "
                                "extra provides it).")
            for name in sorted(registered - set(names)):
                failures.append(f"{label} {name!r} is registered but not declared. Fix: add "
                                f'{name} = "{module}" to [project.entry-points."{group}"] in pyproject.toml, '
                                f"{reinstall}.")
        implemented = set(record.hooks) - _IMPLIED_HOOKS
        for hook in sorted(implemented - set(declared.hooks)):
            failures.append(f"hook {hook} is implemented but not declared. Fix: add {hook} = \"{module}\" to "
                            f'[project.entry-points."plait.hooks"] in pyproject.toml, {reinstall}.')
        for hook in sorted(h for h, optional in declared.hooks.items() if not optional and h not in implemented):
            failures.append(f"hook {hook} is declared in plait.hooks but {module} does not implement it. Fix: "
                            "implement it with @hookimpl, or remove the declaration.")
        _fail(f"what {distribution} declares differs from what {module} registers", failures)

    # -- blocks ----------------------------------------------------------------------------------
    def test_every_block_type_has_an_example(self) -> None:
        """The examples cover exactly the registered block types, which load by slug."""
        from plait import plugins
        from plait.blocks import get_block_class

        record = self._loaded()
        registered: dict[str, type] = dict(record.contributions.blocks)
        suite = type(self).__name__
        failures = []
        for slug, block_cls in sorted(registered.items()):
            if block_cls not in self.examples:
                failures.append(f"block type {slug!r} ({block_cls.__name__}) has no example. Fix: add "
                                f"`{block_cls.__name__}: [{block_cls.__name__}(...)]` to {suite}.examples, with "
                                "realistic values and every secret field set.")
            if plugins.block_class(slug) is not block_cls or get_block_class(slug) is not block_cls:
                failures.append(f"block type {slug!r} does not load as {block_cls.__name__} "
                                f"(plait.plugins.block_class gives {plugins.block_class(slug)!r}). Fix: give it a "
                                "slug no other plugin registers.")
        for block_cls, given in self.examples.items():
            name = getattr(block_cls, "__name__", repr(block_cls))
            if block_cls not in registered.values():
                failures.append(f"{name} has an example but {self._plugin_name()} does not register it. Fix: "
                                "return it from plait_register_blocks, or remove it from examples.")
            items = _as_list(given)
            if not items:
                failures.append(f"examples[{name}] is empty. Fix: give at least one instance.")
            for example in items:
                if type(example) is not block_cls:
                    failures.append(f"examples[{name}] holds a {type(example).__name__}. Fix: give instances of "
                                    f"{name} itself.")
        _fail(f"{suite}.examples does not match the registered block types", failures)

    def test_block_conforms(self, block_example: tuple[type[Block], Block]) -> None:
        """Each example passes the block conformance suite (``assert_block_conforms``)."""
        from plait.testing._blocks import assert_block_conforms

        block_cls, example = block_example
        assert_block_conforms(block_cls, example, checks=self.conformance_checks(example))

    # -- tasks and flows -------------------------------------------------------------------------
    def _check_registered(self, kind: str, expected: Collection[Any] | None) -> None:
        import plait
        from plait import plugins

        self._loaded()
        wanted_cls, listed = (plait.Task, plugins.registered_tasks()) if kind == "task" else \
            (plait.Flow, plugins.registered_flows())
        ours = [item for owner, item in listed if owner == self._plugin_name()]
        hook = f"plait_register_{kind}s"
        decorator = f"@{kind}"
        failures = [f"{item!r} is registered as a {kind} but is not a plait.{wanted_cls.__name__}. Fix: make it with "
                    f"{decorator} (from plait import {kind}) and return it from {hook}."
                    for item in ours if not isinstance(item, wanted_cls)]
        if expected is not None:
            by_name = {getattr(item, "name", repr(item)): item for item in ours}
            wanted = {entry if isinstance(entry, str) else getattr(entry, "name", repr(entry)): entry
                      for entry in expected}
            for name in sorted(set(wanted) - set(by_name)):
                failures.append(f"{kind} {name!r} is not registered. Fix: return it from {hook} (and declare {hook} "
                                'in [project.entry-points."plait.hooks"]).')
            for name in sorted(set(by_name) - set(wanted)):
                failures.append(f"{kind} {name!r} is registered but not in the suite's {kind}s. Fix: add it to "
                                f"{type(self).__name__}.{kind}s, or stop registering it.")
            for name, entry in sorted(wanted.items()):
                if not isinstance(entry, str) and name in by_name and by_name[name] is not entry:
                    failures.append(f"the registered {kind} {name!r} is another object than the suite's. Fix: "
                                    f"register the {kind} users import.")
        _fail(f"the {kind}s {self._plugin_name()} registers are wrong", failures)

    def test_registered_tasks_are_plait_tasks(self) -> None:
        """Every registered task is a plait Task (and they are the suite's ``tasks`` if set)."""
        self._check_registered("task", self.tasks)

    def test_registered_flows_are_plait_flows(self) -> None:
        """Every registered flow is a plait Flow (and they are the suite's ``flows`` if set)."""
        self._check_registered("flow", self.flows)

    # -- the public API --------------------------------------------------------------------------
    def test_all_names_the_public_namespace(self) -> None:
        """``__all__`` lists exactly the package's public names (httpx's test), each defined."""
        package = self._package()
        name = package.__name__
        exported = getattr(package, "__all__", None)
        if exported is None:
            raise AssertionError(f"{name} has no __all__. Fix: list what users import in {name}/__init__.py: "
                                 '`__all__ = ["MyBlock", "my_task", ...]`.')
        failures = []
        for member in exported:
            if not hasattr(package, member):
                failures.append(f"{member!r} is in __all__ but {name} does not define it. Fix: import it in "
                                f"{name}/__init__.py, or remove it from __all__.")
            elif member.startswith("_") and not (member.startswith("__") and member.endswith("__")):
                failures.append(f"{member!r} in __all__ is a private name. Fix: remove it from __all__, or rename it.")
        public = {
            member for member, value in vars(package).items()
            # submodules are attributes once imported; `from __future__ import x` binds a feature
            if not member.startswith("_") and not isinstance(value, ModuleType)
            and type(value).__module__ != "__future__"
        }
        for member in sorted(public - set(exported)):
            failures.append(f"{member!r} is public in {name} but not in __all__. Fix: add it to __all__, or import "
                            f"it under a private name (`import x as _x`) or del it in {name}/__init__.py.")
        if self.exports is not None:
            for member in sorted(set(exported) - set(self.exports)):
                failures.append(f"{member!r} was added to __all__. Fix: if that is on purpose, add it to "
                                f"{type(self).__name__}.exports (and document it).")
            for member in sorted(set(self.exports) - set(exported)):
                failures.append(f"{member!r} is no longer in __all__. Fix: put it back, or remove it from "
                                f"{type(self).__name__}.exports on purpose (and say so in the CHANGELOG).")
        _fail(f"{name}.__all__ is not its public namespace", failures)

    def test_registered_blocks_tasks_and_flows_are_exported(self) -> None:
        """What the plugin registers, users can import from the package itself."""
        record = self._loaded()
        package = self._package()
        exported = {id(getattr(package, member, None)) for member in getattr(package, "__all__", ())}
        things = [("block type", cls.__name__, cls) for cls in record.contributions.blocks.values()]
        things += [("task", getattr(t, "name", repr(t)), t) for t in record.contributions.tasks]
        things += [("flow", getattr(f, "name", repr(f)), f) for f in record.contributions.flows]
        failures = [f"{kind} {label!r} is registered but not exported by {package.__name__}. Fix: import it in "
                    f"{package.__name__}/__init__.py and add it to __all__."
                    for kind, label, thing in things if id(thing) not in exported]
        _fail(f"{package.__name__} does not export what it registers", failures)

    def test_only_plaits_public_api_is_imported(self) -> None:
        """No module imports a private part of plait, a collection it does not depend on, or
        (at import time) one of ``optional_imports``."""
        own = self._package().__name__.split(".")[0]
        depends_on = self._dependencies()
        allowed = ", ".join(f"`{m}`" for m in sorted(self.public_modules))
        failures = []
        for path, rel in self._modules():
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            at_load = set(map(id, _imports_at_import_time(tree)))
            for node in ast.walk(tree):
                for module, names in _imported(node):
                    top = module.split(".")[0]
                    where = f"{rel}:{getattr(node, 'lineno', '?')}"
                    if top == "plait":
                        if module not in self.public_modules:
                            failures.append(f"{where} imports {module}, which is not plait's public API. Fix: import "
                                            f"what you need from one of {allowed}.")
                        for name in names:
                            if name.startswith("_"):
                                failures.append(f"{where} imports {name} from {module}, a private name. Fix: use "
                                                "plait's public API only (ask for what is missing to be made public).")
                    elif top.startswith("plait_") and top != own:
                        dist = _distribution_of(top)
                        if _canonical(dist) not in depends_on:
                            failures.append(f"{where} imports {top}, but {self._distribution_name()} does not depend "
                                            f"on {dist}. Fix: add {dist} to [project] dependencies (or to an extra) "
                                            "in pyproject.toml.")
                    if top in self.optional_imports and id(node) in at_load:
                        failures.append(f"{where} imports {top} when the module is imported, but {top} is optional. "
                                        "Fix: import it inside the function that needs it.")
        _fail(f"{own} imports what it must not", failures)

    def _dependencies(self) -> set[str]:
        """The canonical names of every distribution the collection's distribution requires."""
        from importlib import metadata

        from packaging.requirements import InvalidRequirement, Requirement

        try:
            requires = metadata.distribution(self._distribution_name()).requires or []
        except metadata.PackageNotFoundError:
            return set()
        names = set()
        for line in requires:
            try:
                names.add(_canonical(Requirement(line).name))
            except InvalidRequirement:
                continue
        return names

    # -- modules ---------------------------------------------------------------------------------
    def test_modules_stay_small(self) -> None:
        """Every module of the package is under ``max_module_lines`` lines."""
        failures = []
        for path, rel in self._modules():
            count = len(path.read_text(encoding="utf-8").splitlines())
            if count >= self.max_module_lines:
                failures.append(f"{rel} has {count} lines (the limit is {self.max_module_lines - 1}). Fix: split it "
                                "into modules by topic.")
        _fail(f"{self._package().__name__} has modules that are too long", failures)

    def test_package_is_typed(self) -> None:
        """The package ships ``py.typed`` (PEP 561), so users' type checkers read its hints."""
        marker = self._package_dir() / "py.typed"
        if not marker.is_file():
            raise AssertionError(f"{marker} is missing, so type checkers ignore the collection's type hints. Fix: "
                                 f"create it empty (touch {marker}) and ship it in the wheel.")

    # -- docs ------------------------------------------------------------------------------------
    def test_docs_examples_run(self, docs_page: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        """The page's ```python blocks run, in order, as written (see ``docs``)."""
        import pytest

        path = (self._root() / docs_page).resolve()
        if not path.is_file():
            if path.parent.is_dir():
                raise AssertionError(f"docs lists {docs_page!r}, but there is no {path}. Fix: correct the path "
                                     f"(relative to {self._root()}) in {type(self).__name__}.docs.")
            pytest.skip(f"{path} is not here (the collection is tested outside the plait repository)")
        text = path.read_text(encoding="utf-8")
        found = [(m.group(1), text.count("\n", 0, m.start()) + 1) for m in _PYTHON_BLOCK.finditer(text)]
        if not found:
            raise AssertionError(f"{docs_page} has no ```python example. Fix: show a flow in a ```python block, or "
                                 f"remove the page from {type(self).__name__}.docs.")
        tmp_path.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PLAIT_HOME": str(tmp_path / "home"), **self.docs_env(request)}
        for name in ("PLAIT_DATABASE_URL", "PLAIT_RESULT_STORAGE"):
            env.pop(name, None)
        for number, (code, line) in enumerate(found, start=1):
            label = f"{docs_page} example {number} (line {line})"
            script = tmp_path / f"example_{number}.py"
            script.write_text(self.docs_script(code, request), encoding="utf-8")
            try:
                done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                                      text=True, timeout=self.docs_timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{label} ran longer than {self.docs_timeout} s. Fix: make it finish, or raise "
                                     f"{type(self).__name__}.docs_timeout.") from None
            if done.returncode != 0:
                raise AssertionError(
                    f"{label} failed (exit code {done.returncode}). Fix: make it run as written — each example runs "
                    "as a script in a fresh PLAIT_HOME, after the page's earlier examples; use ```text for code "
                    f"that is not meant to run.\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
                )
            expected = _EXPECTED_OUTPUT.search(code)
            if expected:
                lines = done.stdout.strip().splitlines()
                last = lines[-1] if lines else ""
                if last != expected.group(1).strip():
                    raise AssertionError(f"{label} prints {last!r}, but the page says {expected.group(1).strip()!r}. "
                                         "Fix: correct the `# ...` comment after the print, or the example.")


def _plait_range(requirements: Sequence[str]) -> str | None:
    """The specifier of the unconditional ``plait`` requirement among ``requirements``."""
    from packaging.requirements import InvalidRequirement, Requirement

    for line in requirements:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if _canonical(req.name) == "plait" and not req.marker:
            return str(req.specifier) or None
    return None


def _same_range(one: str | None, other: str | None) -> bool:
    """Whether two plait ranges are the same set of specifiers (order aside)."""
    from packaging.specifiers import SpecifierSet

    if one is None or other is None:
        return one == other
    return SpecifierSet(one) == SpecifierSet(other)


def _as_list(given: Block | Sequence[Block]) -> list[Block]:
    """An ``examples`` value as a list: one instance, or a list or tuple of them."""
    return list(given) if isinstance(given, (list, tuple)) else [given]  # type: ignore[list-item]


# -- reading imports -----------------------------------------------------------------------------
def _imported(node: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, imported names) of an absolute import statement; [] for anything else."""
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [(node.module, [alias.name for alias in node.names])]
    if isinstance(node, ast.Import):
        return [(alias.name, []) for alias in node.names]
    return []


def _imports_at_import_time(tree: ast.Module) -> list[ast.stmt]:
    """The import statements that run when the module is imported: not inside a function,
    nor under ``if TYPE_CHECKING:``."""
    found: list[ast.stmt] = []

    def visit(statements: list[ast.stmt]) -> None:
        for statement in statements:
            if isinstance(statement, (ast.Import, ast.ImportFrom)):
                found.append(statement)
            elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            elif isinstance(statement, ast.If) and _is_type_checking(statement.test):
                visit(statement.orelse)
            else:
                for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                    for child in getattr(statement, field, None) or []:
                        visit(child.body if isinstance(child, (ast.ExceptHandler, ast.match_case)) else [child])

    visit(tree.body)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _distribution_of(top_level: str) -> str:
    """The distribution that provides the import package ``top_level`` (by plait's naming
    convention when the installed metadata does not say: editable installs)."""
    from importlib import metadata

    names = metadata.packages_distributions().get(top_level)
    return names[0] if names else top_level.replace("_", "-")
