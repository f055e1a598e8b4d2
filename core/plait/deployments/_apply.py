"""Deployments as code: ``plait deploy`` reads ``plait.yaml`` and saves what it describes.

    # plait.yaml
    deployments:
      - name: nightly
        entrypoint: flows/etl.py:etl      # relative to this file's directory
        work_pool: local
        parameters: {days: 1}
        schedules:
          - cron: "0 3 * * *"
            timezone: Europe/Paris

Every entry is checked first (the flow is imported to check its parameters), then each is
saved; applying the same file again reports ``unchanged``. ``schedules: []`` clears a
deployment's schedules; leaving the key out keeps the saved ones (Prefect #23097 is the bug
this avoids: there an empty list was ignored). Leaving ``paused`` out keeps it as saved.

A value may be ``"${var:name}"``: the variable's value (``plait.variables``) itself when it
is the whole string (``parameters: {days: "${var:etl_days}"}`` gives a number), else put in
as text; ``$${var:name}`` is the literal text.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from plait.deployments._model import Deployment, DeploymentError, deployment_from_flow

__all__ = ["DeploymentsFileError", "read_deployments_file", "apply_file"]

DEFAULT_FILE = "plait.yaml"
# What an entry may hold: the Deployment's fields a person writes (plait fills in the rest).
_ENTRY_KEYS = sorted(set(Deployment.model_fields) - {"flow_name", "parameter_schema", "bundle_key"})


class DeploymentsFileError(DeploymentError):
    """A deployments file that cannot be read or describes an invalid deployment."""


def _parse(path: Path) -> Any:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DeploymentsFileError(f"{path} does not exist; write a plait.yaml with a 'deployments:' list "
                                   "(see docs/deployments.md) or give its path with --file") from None
    except OSError as exc:
        raise DeploymentsFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DeploymentsFileError(f"{path} is not valid YAML: {exc}") from None


@contextmanager
def _importable_from(directory: Path) -> Iterator[None]:
    """Modules under ``directory`` importable while an entry's flow is loaded."""
    added = str(directory) not in sys.path
    if added:
        sys.path.insert(0, str(directory))
    try:
        yield
    finally:
        if added and str(directory) in sys.path:
            sys.path.remove(str(directory))


def _loadable(entrypoint: str, workdir: Path) -> str:
    """The entrypoint with a relative file path made absolute from the working directory."""
    where, _, attribute = entrypoint.rpartition(":")
    if where.endswith(".py") or "/" in where:
        file = Path(where).expanduser()
        return f"{file if file.is_absolute() else workdir / file}:{attribute}"
    _forget_other_copies(where, workdir)
    return entrypoint


def _forget_other_copies(module: str, workdir: Path) -> None:
    """A module entrypoint whose package lies in ``workdir`` is imported from there, even
    when this process imported a module of that name from elsewhere before (another
    project's ``flows``)."""
    top = module.split(".")[0]
    if not ((workdir / top).is_dir() or (workdir / f"{top}.py").is_file()):
        return  # an installed module: whatever this process imported is the one
    for name, loaded in list(sys.modules.items()):
        if name == top or name.startswith(top + "."):
            file = getattr(loaded, "__file__", None)
            if file and not Path(file).resolve().is_relative_to(workdir):
                del sys.modules[name]


def _with_variables(path: Path, index: int, raw: dict[str, Any]) -> dict[str, Any]:
    """The entry with each ``${var:name}`` replaced by the variable's value (``plait.variables``)."""
    from plait.variables import substitute_references

    name = raw.get("name")
    where = f"{path}: deployment {name!r}" if isinstance(name, str) and "${" not in name else \
        f"{path}: deployment {index + 1}"
    absent: list[tuple[str, str]] = []
    try:
        found: dict[str, Any] = substitute_references(raw, "", absent)
    except ValueError as exc:
        raise DeploymentsFileError(f"{where}: {exc}") from None
    if absent:
        listed = "; ".join(f"{variable} (key {key!r})" for variable, key in absent)
        raise DeploymentsFileError(f"{where}: variable(s) not set: {listed}. Set them with `plait variable set "
                                   "NAME VALUE` (or remove the ${var:...} references); nothing was saved.")
    return found


def _entry(path: Path, index: int, raw: Any) -> Deployment:
    from plait.infrastructure import load_flow

    where = f"{path}: deployment {index + 1}"
    if not isinstance(raw, dict):
        raise DeploymentsFileError(f"{where} is {type(raw).__name__}; each deployment is a mapping "
                                   "with name, entrypoint and options")
    raw = _with_variables(path, index, raw)
    unknown = sorted(set(raw) - set(_ENTRY_KEYS))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), _ENTRY_KEYS, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise DeploymentsFileError(f"{where}: unknown key(s) {', '.join(hints)}; keys: {', '.join(_ENTRY_KEYS)}")
    for key in ("name", "entrypoint"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise DeploymentsFileError(f"{where}: '{key}' is required (a string)")
    where = f"{path}: deployment {raw['name']!r}"
    options = dict(raw)
    name, entrypoint = options.pop("name").strip(), options.pop("entrypoint").strip()
    base = path.parent
    workdir = Path(options.pop("path", None) or base).expanduser()
    workdir = (workdir if workdir.is_absolute() else base / workdir).resolve()
    schedules = options.pop("schedules", None)
    keep_schedules = "schedules" not in raw
    if "schedules" in raw and schedules is None:
        schedules = []  # `schedules:` with nothing after it: as explicit as []
    if not isinstance(schedules, (list, type(None))):
        raise DeploymentsFileError(f"{where}: 'schedules' must be a list (use [] to clear them)")
    if "triggers" in raw and raw["triggers"] is None:
        options["triggers"] = []  # `triggers:` with nothing after it removes them, as [] does
    try:
        with _importable_from(workdir):
            flow = load_flow(_loadable(entrypoint, workdir))
        return deployment_from_flow(
            flow, name, entrypoint=entrypoint, path=workdir, schedules=schedules,
            keep_schedules=keep_schedules, **options,
        )
    except (DeploymentError, TypeError, ValueError, LookupError) as exc:
        raise DeploymentsFileError(f"{where}: {exc}") from None


def read_deployments_file(path: str | Path = DEFAULT_FILE) -> list[Deployment]:
    """The deployments a ``plait.yaml`` describes, each checked (nothing is saved).

    Raises:
        DeploymentsFileError: The file is missing or not YAML, an entry has an unknown key
            (with a suggestion), a flow cannot be loaded, or a parameter or schedule is
            invalid; the message names the file and the deployment.
    """
    path = Path(path).expanduser().resolve()
    document = _parse(path)
    if document is None:
        document = {"deployments": []}
    if not isinstance(document, dict) or set(document) - {"deployments"}:
        extra = sorted(set(document) - {"deployments"}) if isinstance(document, dict) else []
        detail = f"unknown top-level key(s): {', '.join(map(repr, extra))}" if extra else "it is not a mapping"
        raise DeploymentsFileError(f"{path}: {detail}; the file holds one key, 'deployments', a list")
    entries = document.get("deployments") or []
    if not isinstance(entries, list):
        raise DeploymentsFileError(f"{path}: 'deployments' must be a list")
    deployments = [_entry(path, i, raw) for i, raw in enumerate(entries)]
    seen: set[str] = set()
    for deployment in deployments:
        if deployment.full_name in seen:
            raise DeploymentsFileError(f"{path}: deployment {deployment.full_name!r} is described twice")
        seen.add(deployment.full_name)
    return deployments


def apply_file(path: str | Path = DEFAULT_FILE) -> list[tuple[str, str]]:
    """Save every deployment ``path`` describes; idempotent.

    Returns:
        ``[(full name, outcome)]`` in file order, outcome ``"created"``, ``"updated"`` or
        ``"unchanged"``.

    Raises:
        DeploymentsFileError: See ``read_deployments_file``; nothing is saved then.
        DeploymentError: A deployment's work pool does not exist.
    """
    results = []
    for deployment in read_deployments_file(path):
        row, outcome = deployment.apply()
        results.append((f"{row.get('flow_name', deployment.flow_name)}/{row.get('name', deployment.name)}", outcome))
    return results
