"""The core's layers (shared/DESIGN.md): an import never points up, counting imports inside
functions, and no two parts of the core import each other in a cycle.

Every module of core/plait belongs to one group below; a new module must be placed here.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "core" / "plait"

# Top to bottom. A group is a module or a package (with its submodules). Within a layer,
# groups may import each other, but never in a cycle.
LAYERS: list[list[str]] = [
    ["plait.cli", "plait.server", "plait.worker", "plait.testing", "plait._pytest_plugin"],
    ["plait.client"],
    ["plait.infrastructure", "plait.registry", "plait.deployments", "plait.schedules", "plait.automations",
     "plait.events"],
    ["plait", "plait.flows", "plait.tasks", "plait.futures", "plait.task_runners", "plait._engine",
     "plait._context", "plait._pause", "plait._callables", "plait._options", "plait.cache_policies", "plait.runtime",
     "plait._logging", "plait._limits", "plait._hooks",
     "plait._process_runner", "plait.transactions", "plait.artifacts", "plait.external"],
    ["plait._recording", "plait._recovery", "plait._recorder", "plait._journal", "plait._sinks", "plait._spool"],
    ["plait.notifications", "plait.blocks", "plait.plugins", "plait._plugin_state", "plait._plugin_discovery",
     "plait._plugin_guard", "plait._plugin_records", "plait._plugin_contract", "plait.hookspecs", "plait.results", "plait.variables",
     "plait.history"],
    ["plait._store", "plait._api"],
    ["plait.states", "plait.settings", "plait.exceptions", "plait._runs", "plait._masking", "plait._keys",
     "plait._version", "plait._batch", "plait._automation_model"],
]
RANK = {group: rank for rank, layer in enumerate(LAYERS) for group in layer}
# The only imports allowed to point up, each inside one method and each the user's door into
# a layer above: ``Flow.deploy()`` saves a deployment, ``Flow.serve()`` runs a serve loop.
UPWARD_DOORS = {
    ("plait.flows", "plait.deployments"): "Flow.deploy() and Flow.serve() hand the flow to deployments",
    ("plait.flows", "plait.worker"): "Flow.serve() runs the serve loop of plait.worker",
    ("plait.runtime", "plait.deployments"): "runtime.deployment reads the deployment that created the run",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(p): p for p in CORE.rglob("*.py") if "migrations" not in p.parts
    }


def _group(module: str) -> str | None:
    """The most specific group holding ``module`` (``plait`` holds only the package itself)."""
    if module == "plait":
        return "plait"
    parts = module.split(".")
    for i in range(len(parts), 1, -1):
        candidate = ".".join(parts[:i])
        if candidate in RANK:
            return candidate
    return None


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the core modules it imports anywhere (top level or inside functions)."""
    found: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # "from plait import plugins" imports the module plait.plugins; "from plait
                # import flow" imports a name the package plait defines
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
                ]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith("plait"):
                    found[name].add(target)
    return found


def test_every_core_module_has_a_layer() -> None:
    missing = sorted(m for m in _modules() if _group(m) is None)
    assert missing == [], f"place these modules in a layer of tests/test_layers.py: {missing}"


def test_no_import_points_up_a_layer() -> None:
    modules = _modules()
    upward = []
    for source, targets in _imports(modules).items():
        for target in targets:
            src, dst = _group(source), _group(target)
            if (source, _group(target)) in UPWARD_DOORS:
                continue
            if src and dst and src != dst and RANK[dst] < RANK[src]:
                upward.append(f"{source} -> {target} ({src} is below {dst})")
    assert upward == [], "imports pointing up a layer:\n" + "\n".join(sorted(upward))


def test_no_cycle_between_groups() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for source, targets in _imports(_modules()).items():
        for target in targets:
            src, dst = _group(source), _group(target)
            if src and dst and src != dst and (source, dst) not in UPWARD_DOORS:
                graph[src].add(dst)
    cycles = []
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in path and len(path) < 8:
                    stack.append((nxt, [*path, nxt]))
    assert cycles == [], "import cycles between parts of the core:\n" + "\n".join(sorted(set(cycles))[:20])


def test_the_core_never_imports_a_plugin_by_name() -> None:
    offenders = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("plait_"):
                offenders.append(f"{name}: from {node.module}")
            elif isinstance(node, ast.Import):
                offenders += [f"{name}: import {a.name}" for a in node.names if a.name.startswith("plait_")]
    assert offenders == []


def test_the_store_is_the_only_code_that_builds_sql() -> None:
    builders = {"select", "insert", "update", "delete", "text", "Table", "MetaData", "bindparam"}
    offenders = []
    for name, path in _modules().items():
        if name.startswith(("plait._store", "plait.testing")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
                names = {a.name for a in node.names}
                if node.module in ("sqlalchemy", "sqlalchemy.sql", "sqlalchemy.dialects.sqlite",
                                   "sqlalchemy.dialects.postgresql") and names & builders or node.module == "sqlalchemy.engine":
                    offenders.append(f"{name}: from {node.module} import {', '.join(sorted(names))}")
            elif isinstance(node, ast.Attribute) and node.attr in ("exec_driver_sql",):
                offenders.append(f"{name}: .{node.attr}")
    assert offenders == [], "SQL outside plait._store:\n" + "\n".join(sorted(offenders))


def test_upward_doors_import_only_inside_functions() -> None:
    """A door may open only when called: a module-level import would load the layer above on
    ``import plait``."""
    modules = _modules()
    offenders = []
    for source, target in UPWARD_DOORS:
        tree = ast.parse(modules[source].read_text())
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            offenders += [f"{source}: {n}" for n in names if n == target or n.startswith(target + ".")]
    assert offenders == []
