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
    "install_outcome",
    "editable_location",
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
    dist = _distribution(name)
    return _range_of(list(dist.requires or [])) if dist is not None else None


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


def _parse_requirement(text: str) -> Any:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise RegistryError(
            f"{text!r} is not a collection requirement ({exc}); write e.g. plait-dbt[duckdb]==0.1.0"
        ) from None
    if req.url or req.marker:
        raise RegistryError(f"{text!r}: give a name, extras and a version only, e.g. plait-dbt[duckdb]==0.1.0")
    return req


def editable_location(name: str) -> str | None:
    """The source directory of an editable install of ``name`` (PEP 610 direct_url.json)."""
    import json

    dist = _distribution(name)
    text = dist.read_text("direct_url.json") if dist is not None else None
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict) and (data.get("dir_info") or {}).get("editable"):
        url = str(data.get("url", ""))
        return url.removeprefix("file://") or "?"
    return None


def _range_of(requires: list[str]) -> str | None:
    """The plait range among ``requires`` (Requires-Dist lines), or None."""
    from packaging.requirements import InvalidRequirement, Requirement

    from plait.registry._build import format_specifier

    for line in requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if _canonical(req.name) == "plait" and not req.marker:
            return format_specifier(req.specifier) or None
    return None


def _check_target(name: str, version: str, plait_range: str | None, extras: list[str],
                  declared: list[str], *, force: bool, editable: bool) -> dict[str, Any]:
    """Refuse what must not happen silently; return what is installed now."""
    current = plait_version()
    if not supports(plait_range, current):
        raise RegistryError(
            f"{name} {version} supports plait{plait_range} but plait {current} "
            f"is installed; upgrade plait or pick an older {name}"
        )
    unknown = [e for e in extras if _canonical(e) not in {_canonical(d) for d in declared}]
    if unknown:
        have = ", ".join(sorted(declared)) or "none"
        raise RegistryError(f"{name} {version} has no extra {', '.join(unknown)}; the extras it declares: {have}")
    before = installed_version(name)
    location = editable_location(name) if before else None
    if location and not editable and not force:
        raise RegistryError(
            f"{name} {before} is installed in editable mode from {location}; installing {name} {version} "
            "would replace it: pass --force to replace it (or --editable to reinstall the source)"
        )
    if before and not location and _is_older(version, before) and not force:
        raise RegistryError(
            f"{name} {before} is installed, newer than {version}; pass --force to downgrade it"
        )
    return {"installed_before": before, "editable_before": location}


def install_plan(
    loaded: LoadedRegistry | None,
    name: str,
    *,
    editable: bool = False,
    find_links: str | None = None,
    index_url: str | None = None,
    no_index: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """What ``plait collection install NAME[extra]==VERSION`` runs, after its checks.

    Sources, in order: ``find_links`` (a wheelhouse ``plait collection build`` wrote: the
    wheel is picked from its index.json and its sha256 verified, against the registry's too
    when the registry lists that file); ``index_url`` (the wheel is downloaded first and
    verified against the registry's sha256); else the registry's install target, a path
    relative to the registry file, or, when that path does not exist (a registry used
    away from its checkout), the pinned requirement from the package index.

    Refuses (``RegistryError``): an unknown name or extra, a version whose plait range
    excludes the running plait, a sha256 mismatch, replacing an editable install or
    downgrading (both unless ``force``).

    Returns:
        ``{name, version, extras, command: [argv], source: "wheelhouse" | "index" | "path",
        note, artifact, sha256, download, installed_before, editable_before}``.
    """
    if find_links and index_url:
        raise RegistryError("give --find-links or --index-url, not both")
    req = _parse_requirement(name)
    extras = sorted(req.extras)
    spec = str(req.specifier)
    try:
        entry = find_collection(loaded, req.name) if loaded is not None else None
    except RegistryError:
        if not find_links:
            raise
        entry = None  # a wheelhouse may hold collections the registry does not list (yet)
    dist_name = entry.name if entry is not None else req.name
    suffix = f"[{','.join(extras)}]" if extras else ""
    pip = [sys.executable, "-m", "pip", "install"]
    plan: dict[str, Any] = {"name": dist_name, "extras": extras, "note": "", "artifact": None,
                            "sha256": None, "download": None}
    if find_links:
        from plait.registry._wheelhouse import find_artifact, wheel_metadata

        where = Path(find_links).expanduser().resolve()
        path, artifact = find_artifact(where, dist_name, spec)
        meta = wheel_metadata(path)
        version = str(meta["version"])
        _verify_against_registry(entry, path.name, str(artifact["sha256"]), version)
        checks = _check_target(dist_name, version, _range_of(meta["requires"]), extras, meta["extras"],
                               force=force, editable=False)
        links = ["--find-links", str(where)] + (["--no-index"] if no_index else [])
        plan.update(version=version, source="wheelhouse", artifact=str(path), sha256=artifact["sha256"],
                    command=[*pip, *links, f"{path}{suffix}"], **checks)
        return plan
    if entry is None:
        raise RegistryError(
            f"no registry to find {req.name} in: pass --find-links WHEELHOUSE, or --registry PATH"
        )
    if spec and not req.specifier.contains(entry.version, prereleases=True):
        raise RegistryError(
            f"{entry.name}{spec} is not in {loaded.path if loaded else 'the registry'}, which lists "
            f"{entry.name} {entry.version}; use --find-links with a wheelhouse that has it"
        )
    checks = _check_target(entry.name, entry.version, entry.plait_range, extras, list(entry.extras),
                           force=force, editable=editable)
    plan["version"] = entry.version
    if index_url:
        wheel = next((a for a in entry.artifacts if a.kind == "wheel" and a.sha256), None)
        if wheel is None:
            raise RegistryError(
                f"the registry records no wheel sha256 for {entry.name} {entry.version}, so a download "
                "cannot be verified; rebuild registry.json with `plait registry build`"
            )
        index = ["--index-url", index_url] + (["--no-index"] if no_index else [])
        download = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--index-url", index_url, f"{entry.name}=={entry.version}"]
        plan.update(source="index", artifact=wheel.file, sha256=wheel.sha256, download=download,
                    command=[*pip, *index, f"{{wheel}}{suffix}"], **checks)
        return plan
    assert loaded is not None
    target = entry.install.target
    local = target.startswith(("./", "../", "/")) or Path(target).is_absolute()
    path_dir = (loaded.directory / target).resolve() if local else None
    if path_dir is not None and path_dir.is_dir():
        where_text = f"{path_dir}{suffix}"
        args, source = (["-e", where_text] if editable else [where_text]), "path"
    else:
        if editable:
            raise RegistryError(
                f"--editable needs the source of {entry.name}, but {target} does not exist next to {loaded.path}"
            )
        if path_dir is not None:
            plan["note"] = (f"{target} not found next to {loaded.path}; installing {entry.install.pip} "
                            "from the package index")
        pin = entry.install.pip.replace(entry.name, entry.name + suffix, 1) if suffix else entry.install.pip
        args, source = [pin], "index"
    plan.update(source=source, command=[*pip, *args], **checks)
    return plan


def _verify_against_registry(entry: Collection | None, file: str, sha256: str, version: str) -> None:
    if entry is None or entry.version != version:
        return
    for artifact in entry.artifacts:
        if artifact.file == file and artifact.sha256 and artifact.sha256 != sha256:
            raise RegistryError(
                f"refusing to install {file}: the wheelhouse records sha256 {sha256} but the registry "
                f"records {artifact.sha256} for {entry.name} {version}: the wheel was not built from the "
                "registry's source, or registry.json is out of date (`plait registry check`)"
            )


def _successfully_installed(lines: list[str]) -> dict[str, str]:
    """``{canonical name: version}`` from pip's "Successfully installed a-1.0 b-2.0" line."""
    found: dict[str, str] = {}
    for line in lines:
        if line.startswith("Successfully installed "):
            for item in line.removeprefix("Successfully installed ").split():
                dist, _, version = item.rpartition("-")
                found[_canonical(dist)] = version
    return found


def install_outcome(name: str, before: str | None, editable_before: str | None, lines: list[str]) -> dict[str, Any]:
    """What pip did to ``name``, from the installed version before and after and pip's output.

    Returns:
        ``{action: "installed" | "upgraded" | "downgraded" | "reinstalled" | "already installed",
        version, previous, also: [other distributions pip installed], message}``.
    """
    from importlib import invalidate_caches

    invalidate_caches()
    after = installed_version(name)
    changed = _successfully_installed(lines)
    touched = _canonical(name) in changed
    also = sorted(f"{n} {v}" for n, v in changed.items() if n != _canonical(name))
    if after is None:
        raise RegistryError(f"pip finished but {name} is not installed; see pip's output above")
    if before is None:
        action, message = "installed", f"installed {name} {after}"
    elif before == after and not touched:
        action, message = "already installed", f"{name} {after} is already installed"
    elif before == after:
        action = "reinstalled"
        message = f"reinstalled {name} {after}" + (f" (was editable from {editable_before})" if editable_before else "")
    elif _is_older(before, after):
        action, message = "upgraded", f"upgraded {name} from {before} to {after}"
    else:
        action, message = "downgraded", f"downgraded {name} from {before} to {after}"
    if also:
        message += f"; also installed {', '.join(also)}"
    return {"action": action, "version": after, "previous": before, "also": also, "message": message}


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
