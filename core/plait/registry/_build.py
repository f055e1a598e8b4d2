"""Building registry.json from the collections in a plait checkout.

For each ``collections/*/pyproject.toml`` the metadata comes from the pyproject; what the
collection registers (blocks, tasks, flows, storage schemes, infrastructure) comes from
importing its plugin module in a fresh interpreter whose ``sys.path`` starts with the
collection's directory, and calling its registration hooks through a private plugin manager
with collecting ``register`` callbacks — so the source is described (not an older installed
copy), and nothing else that is installed leaks in. The built-in blocks (the ``plait``
distribution's own ``plait.plugins`` entry points, from ``blocks/``) are described the same way.

The output is deterministic: no timestamps, sorted keys and lists, ``indent=2``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from plait.registry._model import SCHEMA_VERSION, RegistryError, validate_document
from plait.registry._tested import read_tested_with
from plait.registry._wheelhouse import collection_artifacts

__all__ = [
    "find_repo_root", "build_document", "render", "build_registry", "format_specifier", "describe_plugins",
    "describe_collection",
]

GENERATED_BY = "plait registry build"
ENTRY_POINT_GROUP = "plait.plugins"
_CHILD = "from plait.registry._describe import child_main; child_main()"
_OPERATOR_ORDER = {"===": 0, "==": 1, "~=": 2, ">=": 3, ">": 4, "!=": 5, "<=": 6, "<": 7}


# -- the checkout ---------------------------------------------------------------------------
def _is_plait_root(path: Path) -> bool:
    pyproject = path / "pyproject.toml"
    if not (path / "collections").is_dir() or not pyproject.is_file():
        return False
    try:
        return bool(_read_toml(pyproject).get("project", {}).get("name") == "plait")
    except RegistryError:
        return False


def find_repo_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The plait checkout containing ``start`` (default: the current directory): the nearest
    directory with a ``collections/`` folder and a pyproject.toml of the distribution "plait".

    Raises:
        RegistryError: There is none above ``start``.
    """
    here = Path(start if start is not None else Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if _is_plait_root(candidate):
            return candidate
    raise RegistryError(
        f"{here} is not inside a plait checkout (a directory with collections/ and the "
        "pyproject.toml of plait); pass --root PATH"
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: invalid TOML ({exc})") from None
    except OSError as exc:
        raise RegistryError(f"cannot read {path}: {exc.strerror or exc}") from None


def format_specifier(spec: Any) -> str:
    """A SpecifierSet as text with lower bounds first (``>=0.1,<0.2``), the same every run."""
    items = sorted(spec, key=lambda s: (_OPERATOR_ORDER.get(s.operator, 9), s.version))
    return ",".join(str(s) for s in items)


def _plait_range(where: str, dependencies: list[str]) -> str:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    for line in dependencies:
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise RegistryError(f"{where}: invalid dependency {line!r} ({exc})") from None
        if canonicalize_name(req.name) == "plait" and not req.marker:
            if not req.specifier:
                raise RegistryError(f"{where}: the plait dependency needs a range, e.g. \"plait>=0.1,<0.2\"")
            return format_specifier(req.specifier)
    raise RegistryError(f"{where}: no dependency on plait; add e.g. \"plait>=0.1,<0.2\" to [project] dependencies")


def _entry_points(where: str, project: dict[str, Any]) -> dict[str, str]:
    eps = (project.get("entry-points") or {}).get(ENTRY_POINT_GROUP) or {}
    if not eps:
        raise RegistryError(f'{where}: no [project.entry-points."{ENTRY_POINT_GROUP}"] entry point')
    return {str(k): str(v) for k, v in sorted(eps.items())}


def _relative(path: Path, base: Path) -> str:
    text = Path(os.path.relpath(path, base)).as_posix()
    return text if text.startswith("../") else f"./{text}"


# -- describing plugins (in a child interpreter) -----------------------------------------------
def describe_plugins(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run each plugin's registration hooks in one fresh interpreter, each plugin imported
    with its ``source_dir`` first on ``sys.path``; return their ``Contents`` in order.

    A job is ``{label, source_dir, entry_points, install_hint}``.
    """
    with tempfile.TemporaryDirectory(prefix="plait-registry-") as tmp:
        spec, out = Path(tmp) / "jobs.json", Path(tmp) / "contents.json"
        spec.write_text(json.dumps([{**job, "source_dir": str(job["source_dir"])} for job in jobs]), encoding="utf-8")
        env = dict(os.environ, PYTHONHASHSEED="0")
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(spec), str(out)],
                              env=env, capture_output=True, text=True, timeout=600)
        if not out.is_file():
            detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RegistryError(f"describing the plugins failed (exit {proc.returncode}): {detail}")
        results = json.loads(out.read_text(encoding="utf-8"))
    failed = [(job, r) for job, r in zip(jobs, results, strict=True) if not r.get("ok")]
    if failed:
        job, result = failed[0]
        message = f"{job['label']}: {result['message']}"
        if result.get("kind") == "import":
            message += f"; install it with: {job['install_hint']}"
        if len(failed) > 1:
            message += f" (and {len(failed) - 1} more: {', '.join(j['label'] for j, _ in failed[1:])})"
        raise RegistryError(message)
    return [r["contents"] for r in results]


# -- the document ------------------------------------------------------------------------------
def _extras(where: str, project: dict[str, Any]) -> dict[str, list[str]]:
    extras = project.get("optional-dependencies") or {}
    if not isinstance(extras, dict):
        raise RegistryError(f"{where}: [project.optional-dependencies] must be a table of lists")
    return {str(k): [str(r) for r in v] for k, v in sorted(extras.items())}


def _collection(
    root: Path, registry_dir: Path, directory: Path, tested_with: dict[str, dict[str, list[str]]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The metadata part of a collection's entry, and the job that describes its plugin."""
    where = f"{directory.relative_to(root).as_posix()}/pyproject.toml"
    project = _read_toml(directory / "pyproject.toml").get("project")
    if not isinstance(project, dict):
        raise RegistryError(f"{where}: no [project] table")
    name = project.get("name")
    if not name:
        raise RegistryError(f"{where}: [project] has no name")
    if name != directory.name:
        raise RegistryError(
            f"{where}: the distribution is named {name!r} but its directory is {directory.name!r}; make them the same"
        )
    for key in ("version", "description"):
        if not isinstance(project.get(key), str):
            dynamic = " (dynamic values are not supported)" if key in (project.get("dynamic") or []) else ""
            raise RegistryError(f"{where}: [project] needs a static {key}{dynamic}")
    dependencies = [str(d) for d in project.get("dependencies") or []]
    relative = directory.relative_to(root).as_posix()
    license_value = project.get("license")
    if isinstance(license_value, dict):
        license_value = license_value.get("text") or license_value.get("file")
    docs = root / "docs" / "collections" / f"{name}.md"
    entry = {
        "name": name,
        "version": project["version"],
        "description": project["description"],
        "requires_python": project.get("requires-python"),
        "plait_range": _plait_range(where, dependencies),
        "dependencies": dependencies,
        "license": license_value,
        "directory": relative,
        "docs": docs.relative_to(root).as_posix() if docs.is_file() else None,
        "install": {"target": _relative(directory, registry_dir), "pip": f"{name}=={project['version']}"},
        "extras": _extras(where, project),
        "artifacts": collection_artifacts(directory),
        "tested_with": tested_with.get(name, {}).get(project["version"], []),
    }
    job = {"label": f"collection {name}", "source_dir": directory, "entry_points": _entry_points(where, project),
           "install_hint": f"pip install -e ./{relative}"}
    return entry, job


def _builtin(root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    project = _read_toml(root / "pyproject.toml").get("project") or {}
    version = project.get("version")
    if not isinstance(version, str):
        raise RegistryError(f"{root / 'pyproject.toml'}: [project] needs a static version")
    job = {"label": "the built-in blocks", "source_dir": root / "blocks",
           "entry_points": _entry_points("pyproject.toml", project), "install_hint": "pip install -e ."}
    return {"distribution": "plait", "version": version}, job


def collection_dirs(root: Path) -> list[Path]:
    """Directories under ``collections/`` that hold a pyproject.toml, sorted by name."""
    return sorted(p.parent for p in (root / "collections").glob("*/pyproject.toml"))


def build_document(root: str | os.PathLike[str] | None = None, registry_dir: Path | None = None) -> dict[str, Any]:
    """The registry document for the checkout at ``root`` (found from the current directory
    when None), validated against the schema. Install targets are relative to
    ``registry_dir`` (default: ``root``, where registry.json lives).

    Raises:
        RegistryError: A collection's metadata is incomplete, or its plugin cannot be
            imported (with the pip command that fixes it) or raises.
    """
    root_path = Path(root).resolve() if root is not None else find_repo_root()
    if not _is_plait_root(root_path):
        raise RegistryError(f"{root_path} is not a plait checkout (no collections/ or no pyproject.toml of plait)")
    registry_dir = (registry_dir or root_path).resolve()
    builtin, builtin_job = _builtin(root_path)
    tested = read_tested_with(root_path)
    entries, jobs = [], [builtin_job]
    for directory in collection_dirs(root_path):
        entry, job = _collection(root_path, registry_dir, directory, tested)
        entries.append(entry)
        jobs.append(job)
    builtin_contents, *contents = describe_plugins(jobs)
    collections = {entry["name"]: {**entry, **more} for entry, more in zip(entries, contents, strict=True)}
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "generated_by": GENERATED_BY,
        "plait": {"version": builtin["version"]},
        "builtin": {**builtin, **builtin_contents},
        "collections": collections,
    }
    # round-trip through JSON first: what is validated is exactly what is written
    document = json.loads(render(document))
    validate_document(document, "the generated registry")
    return document


def render(document: dict[str, Any]) -> str:
    """The document as registry.json text: sorted keys, indent 2, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def build_registry(
    root: str | os.PathLike[str] | None = None, output: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Build and write registry.json (default: ``<root>/registry.json``); return a summary.

    Returns:
        ``{path, collections: [names], blocks, tasks, flows, builtin_blocks, changed}``.
    """
    root_path = Path(root).resolve() if root is not None else find_repo_root()
    target = Path(output) if output is not None else root_path / "registry.json"
    if not target.is_absolute():
        target = Path.cwd() / target
    document = build_document(root_path, registry_dir=target.parent)
    text = render(document)
    previous = target.read_text(encoding="utf-8") if target.is_file() else None
    if previous != text:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    entries = list(document["collections"].values())
    return {
        "path": str(target),
        "collections": [e["name"] for e in entries],
        "blocks": sum(len(e["blocks"]) for e in entries),
        "tasks": sum(len(e["tasks"]) for e in entries),
        "flows": sum(len(e["flows"]) for e in entries),
        "builtin_blocks": len(document["builtin"]["blocks"]),
        "changed": previous != text,
    }


def describe_collection(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The registry entry of the one collection in ``directory``, built and validated as
    ``plait registry build`` would (metadata, artifacts, its plugin imported in a child
    interpreter), without a checkout around it.

    Raises:
        RegistryError: What ``plait registry build`` would fail with for this collection.
    """
    from plait.registry._model import Collection

    path = Path(directory).resolve()
    root = path.parent.parent if _is_plait_root(path.parent.parent) else path.parent
    entry, job = _collection(root, root, path, read_tested_with(root) if root != path.parent else {})
    [contents] = describe_plugins([job])
    document = json.loads(render({**entry, **contents}))
    try:
        Collection.model_validate(document)
    except Exception as exc:  # a pydantic ValidationError: say which field
        raise RegistryError(f"{path.name}: not a valid registry entry: {exc}") from None
    return dict(document)
