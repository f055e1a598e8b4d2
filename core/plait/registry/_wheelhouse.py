"""Collections as ordinary wheels: building a wheelhouse and finding verified artifacts in it.

``plait collection build`` builds an sdist and a wheel of plait and of every collection with
each project's own PEP 517 backend (hatchling here), called in a child interpreter from the
project's directory — no network and no build isolation, so the backend must be installed
(it is a test dependency). ``SOURCE_DATE_EPOCH`` is pinned: with it hatchling's archives are
byte-for-byte reproducible (measured: same bytes across rebuilds, touched files and umasks),
which is what lets registry.json record wheel hashes that ``plait registry check`` verifies.

The wheelhouse holds ``index.json``: every artifact's file name, kind, distribution, version
and sha256. ``plait collection install --find-links DIR`` verifies an artifact against it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from plait.registry._model import RegistryError

__all__ = [
    "INDEX_NAME",
    "REPRODUCIBLE_EPOCH",
    "build_project",
    "build_wheelhouse",
    "read_index",
    "sha256_of",
    "wheel_metadata",
    "find_artifact",
]

INDEX_NAME = "index.json"
INDEX_SCHEMA = 1
# hatchling's own default date: any fixed value makes the archives reproducible; this one
# gives the same bytes whether or not a caller's environment sets SOURCE_DATE_EPOCH
REPRODUCIBLE_EPOCH = "1580601600"
_BACKEND_CHILD = """\
import importlib, json, sys
backend = importlib.import_module(sys.argv[1])
out = sys.argv[2]
print(json.dumps({"wheel": backend.build_wheel(out), "sdist": backend.build_sdist(out)}))
"""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _project(directory: Path) -> tuple[str, str, str]:
    """(name, version, build backend) of the pyproject in ``directory``."""
    where = directory / "pyproject.toml"
    try:
        data = tomllib.loads(where.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"cannot read {where}: {exc}") from None
    project = data.get("project") or {}
    backend = (data.get("build-system") or {}).get("build-backend") or "setuptools.build_meta:__legacy__"
    if not isinstance(project.get("name"), str) or not isinstance(project.get("version"), str):
        raise RegistryError(f"{where}: [project] needs a static name and version to be built")
    return project["name"], project["version"], backend.split(":")[0]


def build_project(directory: Path, out: Path) -> list[dict[str, Any]]:
    """Build the wheel and sdist of the project in ``directory`` into ``out``.

    Returns:
        ``[{file, kind, name, version, sha256}]``, wheel first.

    Raises:
        RegistryError: The backend is not installed or the build fails (its last line).
    """
    name, version, backend = _project(directory)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, SOURCE_DATE_EPOCH=REPRODUCIBLE_EPOCH)
    proc = subprocess.run(
        [sys.executable, "-c", _BACKEND_CHILD, backend, str(out.resolve())],
        cwd=directory, env=env, capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["no output"]
        if f"No module named '{backend.split('.')[0]}'" in proc.stderr:
            raise RegistryError(
                f"building {name}: its build backend {backend} is not installed in {sys.executable}; "
                f"install it (pip install {backend.split('.')[0]}) and retry"
            )
        raise RegistryError(f"building {name} {version} failed: {lines[-1]}")
    files = json.loads(proc.stdout.strip().splitlines()[-1])
    return [
        {"file": files[kind], "kind": kind, "name": name, "version": version, "sha256": sha256_of(out / files[kind])}
        for kind in ("wheel", "sdist")
    ]


def build_wheelhouse(root: Path, out: Path, *, include_plait: bool = True) -> dict[str, Any]:
    """Build plait (unless ``include_plait`` is false) and every collection of the checkout
    at ``root`` into ``out``, and write ``out/index.json``.

    Artifacts already in ``out`` that are not rebuilt stay listed, so a wheelhouse can
    gather several versions; rebuilt ones replace their entries.

    Returns:
        ``{path, index, artifacts: [{file, kind, name, version, sha256}]}``.
    """
    from plait.registry._build import collection_dirs

    directories = ([root] if include_plait else []) + collection_dirs(root)
    index = read_index(out) if (out / INDEX_NAME).is_file() else {}
    built: list[dict[str, Any]] = []
    for directory in directories:
        built += build_project(directory, out)
    for artifact in built:
        index[artifact["file"]] = {k: v for k, v in artifact.items() if k != "file"}
    write_index(out, index)
    return {"path": str(out), "index": str(out / INDEX_NAME), "artifacts": built}


def write_index(out: Path, artifacts: dict[str, dict[str, Any]]) -> None:
    document = {"schema_version": INDEX_SCHEMA, "generated_by": "plait collection build",
                "artifacts": {name: artifacts[name] for name in sorted(artifacts)}}
    tmp = out / f".{INDEX_NAME}.tmp"
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, out / INDEX_NAME)


def read_index(directory: Path) -> dict[str, dict[str, Any]]:
    """``{file name: {kind, name, version, sha256}}`` from ``directory/index.json``.

    Raises:
        RegistryError: There is no index, or it is not one plait wrote.
    """
    path = directory / INDEX_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(
            f"{directory} has no {INDEX_NAME}, so its artifacts cannot be verified; "
            "build the wheelhouse with `plait collection build --out DIR`"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise RegistryError(f"cannot read {path}: {exc}") from None
    artifacts = data.get("artifacts") if isinstance(data, dict) else None
    if not isinstance(artifacts, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in artifacts.values()
    ):
        raise RegistryError(f"{path} is not a wheelhouse index (no artifacts with sha256)")
    return artifacts


def wheel_metadata(path: Path) -> dict[str, Any]:
    """Name, version, plait requirement lines, extras and requirements from a wheel's METADATA."""
    try:
        with zipfile.ZipFile(path) as archive:
            member = next(n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
            text = archive.read(member).decode("utf-8")
    except (OSError, zipfile.BadZipFile, StopIteration) as exc:
        raise RegistryError(f"{path.name} is not a readable wheel ({exc or 'no METADATA'})") from None
    headers = HeaderParser().parsestr(text, headersonly=True)
    return {
        "name": headers["Name"],
        "version": headers["Version"],
        "requires": headers.get_all("Requires-Dist") or [],
        "extras": headers.get_all("Provides-Extra") or [],
    }


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def find_artifact(directory: Path, name: str, specifier: str = "") -> tuple[Path, dict[str, Any]]:
    """The newest wheel of ``name`` in the wheelhouse ``directory`` whose version matches
    ``specifier`` (e.g. ``==0.3.0``), with its index entry; its sha256 is checked here.

    Raises:
        RegistryError: No index, no such wheel (naming the versions there are), or the file's
            sha256 is not the one the index records.
    """
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    index = read_index(directory)
    wanted = SpecifierSet(specifier)
    candidates: list[tuple[Version, str, dict[str, Any]]] = []
    versions: list[str] = []
    for file, entry in index.items():
        if entry.get("kind") != "wheel" or _canonical(str(entry.get("name", ""))) != _canonical(name):
            continue
        versions.append(str(entry.get("version")))
        try:
            version = Version(str(entry.get("version")))
        except InvalidVersion:
            continue
        if wanted.contains(version, prereleases=True):
            candidates.append((version, file, entry))
    if not candidates:
        have = f"it has {name} {', '.join(sorted(set(versions)))}" if versions else f"it has no wheel of {name}"
        raise RegistryError(f"no wheel of {name}{specifier} in {directory}/{INDEX_NAME}; {have}")
    _, file, entry = max(candidates, key=lambda c: c[0])
    path = directory / file
    if not path.is_file():
        raise RegistryError(f"{directory}/{INDEX_NAME} lists {file} but the file is missing; rebuild the wheelhouse")
    actual = sha256_of(path)
    if actual != entry["sha256"]:
        raise RegistryError(
            f"refusing to install {file}: its sha256 is {actual} but {directory}/{INDEX_NAME} records "
            f"{entry['sha256']}; the file was changed after it was built — rebuild the wheelhouse"
        )
    return path, entry


def collection_artifacts(directory: Path) -> list[dict[str, Any]]:
    """The registry's ``artifacts`` of the collection in ``directory``: its wheel (with the
    sha256 that registry check verifies) and its sdist (file name only: an sdist also holds
    the tests, which test runs may leave files beside). A pyproject without a
    [build-system] table records none: pip would fall back to setuptools' legacy build,
    which is neither reproducible nor installed here."""
    try:
        declared = "build-system" in tomllib.loads((directory / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"cannot read {directory / 'pyproject.toml'}: {exc}") from None
    if not declared:
        return []
    with tempfile.TemporaryDirectory(prefix="plait-artifacts-") as tmp:
        built = build_project(directory, Path(tmp))
    return [{"file": a["file"], "kind": a["kind"], "sha256": a["sha256"] if a["kind"] == "wheel" else None}
            for a in built]
