"""Which registry collections are installed, and installing one with pip.

Everything here reads distribution metadata only (``importlib.metadata``): listing never
imports plugin code, so a broken or incompatible collection is still listed correctly.
"""

from __future__ import annotations

import difflib
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from plait.registry._model import Collection, LoadedRegistry, RegistryError

__all__ = [
    "STATUSES",
    "plait_version",
    "installed_version",
    "installed_plait_range",
    "supports",
    "collection_status",
    "collection_statuses",
    "find_collection",
    "install_plan",
    "run_command",
]

STATUSES = ("installed", "not installed", "outdated", "incompatible", "unlisted")
ENTRY_POINT_GROUP = "plait.plugins"


def plait_version() -> str:
    """The version of the running plait."""
    import plait

    return plait.__version__


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def _distribution(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def installed_version(name: str) -> str | None:
    dist = _distribution(name)
    return dist.version if dist is not None else None


def installed_plait_range(name: str) -> str | None:
    """The plait range the installed distribution ``name`` declares (``Requires-Dist: plait...``)."""
    from packaging.requirements import InvalidRequirement, Requirement

    from plait.registry._build import format_specifier

    dist = _distribution(name)
    for line in (dist.requires or []) if dist is not None else []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if _canonical(req.name) == "plait" and not req.marker:
            return format_specifier(req.specifier) or None
    return None


def supports(plait_range: str | None, version: str | None = None) -> bool:
    """Whether ``plait_range`` (e.g. ``>=0.1,<0.2``) admits plait ``version`` (default: running)."""
    if not plait_range:
        return True
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        return SpecifierSet(plait_range).contains(version or plait_version(), prereleases=True)
    except InvalidSpecifier:
        return False


def _is_older(installed: str, listed: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(installed) < Version(listed)
    except InvalidVersion:
        return installed != listed


def collection_status(entry: Collection) -> dict[str, Any]:
    """One row of ``plait collection ls`` for a registry entry."""
    installed = installed_version(entry.name)
    installed_range = installed_plait_range(entry.name) if installed else None
    if installed is None:
        status = "not installed"
    elif not supports(installed_range):
        status = "incompatible"
    elif _is_older(installed, entry.version):
        status = "outdated"
    else:
        status = "installed"
    return {
        "name": entry.name,
        "description": entry.description,
        "registry_version": entry.version,
        "installed_version": installed,
        "plait_range": entry.plait_range,
        "installed_plait_range": installed_range,
        "status": status,
    }


def _unlisted(listed: set[str]) -> list[dict[str, Any]]:
    """Installed distributions with plait.plugins entry points that the registry does not list."""
    found: dict[str, dict[str, Any]] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        if dist is None:
            continue
        name = dist.metadata["Name"] or ""
        key = _canonical(name)
        if not name or key == "plait" or key in listed or key in found:
            continue
        plait_range = installed_plait_range(name)
        found[key] = {
            "name": name,
            "description": dist.metadata["Summary"] or "",
            "registry_version": None,
            "installed_version": dist.version,
            "plait_range": None,
            "installed_plait_range": plait_range,
            "status": "unlisted",
        }
    return [found[key] for key in sorted(found)]


def collection_statuses(loaded: LoadedRegistry) -> list[dict[str, Any]]:
    """Every registry collection with its install status, then unlisted installed plugins.

    Returns:
        ``[{name, description, registry_version, installed_version, plait_range,
        installed_plait_range, status}]`` with status one of ``STATUSES``.
    """
    rows = [collection_status(loaded.registry.collections[name]) for name in sorted(loaded.registry.collections)]
    return rows + _unlisted({_canonical(name) for name in loaded.registry.collections})


def find_collection(loaded: LoadedRegistry, name: str) -> Collection:
    """The registry entry named ``name`` (``plait-aws``, or ``aws`` for short).

    Raises:
        RegistryError: No such collection, with close matches and how to list them all.
    """
    by_key = {_canonical(key): entry for key, entry in loaded.registry.collections.items()}
    for candidate in (name, f"plait-{name}"):
        if _canonical(candidate) in by_key:
            return by_key[_canonical(candidate)]
    # compare without the common "plait-" prefix, which would make every name look close
    short = {key.removeprefix("plait-"): key for key in sorted(loaded.registry.collections)}
    query = name.lower().removeprefix("plait-")
    close = [short[s] for s in difflib.get_close_matches(query, list(short), n=3, cutoff=0.6)]
    close += [key for s, key in short.items() if query and s.startswith(query) and key not in close]
    where = f"no collection named {name!r} in {loaded.path}"
    if close:
        raise RegistryError(f"{where}; did you mean {', '.join(close)}? Run `plait collection ls` to see them all")
    raise RegistryError(f"{where}; run `plait collection ls` to see them all")


def install_plan(loaded: LoadedRegistry, name: str, *, editable: bool = False) -> dict[str, Any]:
    """What ``plait collection install NAME`` runs, after checking the plait range.

    The registry's install target is a path relative to the registry file; when that path
    does not exist (a registry used away from its checkout) the pinned requirement
    (``plait-aws==0.1.0``) is installed from the package index instead.

    Returns:
        ``{name, version, command: [argv], source: "path" | "index", note}``.

    Raises:
        RegistryError: Unknown name, or the collection does not support the running plait.
    """
    entry = find_collection(loaded, name)
    current = plait_version()
    if not supports(entry.plait_range, current):
        raise RegistryError(
            f"{entry.name} {entry.version} supports plait{entry.plait_range} but plait {current} "
            f"is installed; upgrade plait or pick an older {entry.name}"
        )
    target = entry.install.target
    note = ""
    local = target.startswith(("./", "../", "/")) or Path(target).is_absolute()
    path = (loaded.directory / target).resolve() if local else None
    if path is not None and path.is_dir():
        args, source = (["-e", str(path)] if editable else [str(path)]), "path"
    else:
        if editable:
            raise RegistryError(
                f"--editable needs the source of {entry.name}, but {target} does not exist next to {loaded.path}"
            )
        if path is not None:
            note = f"{target} not found next to {loaded.path}; installing {entry.install.pip} from the package index"
        args, source = [entry.install.pip], "index"
    return {
        "name": entry.name,
        "version": entry.version,
        "command": [sys.executable, "-m", "pip", "install", *args],
        "source": source,
        "note": note,
    }


def run_command(command: list[str], echo: Callable[[str], None]) -> int:
    """Run ``command``, passing each line of its output (stdout and stderr) to ``echo`` as it
    comes; return the exit code."""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            echo(line.rstrip("\n"))
        return proc.wait()
