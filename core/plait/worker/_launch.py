"""Preparing one claimed flow run for its infrastructure block, and stopping it.

What a worker (or ``serve``) does with a claimed run before and around ``block.run(...)``:
merge the job variables (pool < deployment < run), fetch the code (the deployment's path,
or its code bundle downloaded from a storage block and unzipped into a temporary
directory), build the infrastructure block of the pool's type from those variables, and,
when the run must stop early, find its process and terminate the whole process group.
"""

from __future__ import annotations

import inspect
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plait.blocks import InfrastructureBlock
from plait.exceptions import PlaitError

__all__ = [
    "WorkerError",
    "CodeLocation",
    "merge_job_variables",
    "infrastructure_class",
    "fetch_code",
    "resolve_entrypoint",
    "build_block",
    "find_run_process",
    "terminate_process_group",
]

_POSIX = os.name == "posix"
_PROC = Path("/proc")


class WorkerError(PlaitError):
    """A worker cannot run a flow run or a work pool (the message says what to fix)."""


# -- job variables -------------------------------------------------------------------------------
def merge_job_variables(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Job variables of several layers, later layers winning (pool < deployment < run).

    A value that is a mapping in both layers (``env``) is merged key by key (at any depth,
    as the store merges them when it creates a run); any other value replaces the earlier
    one. ``None`` layers are skipped.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            earlier = merged.get(key)
            if isinstance(value, Mapping) and isinstance(earlier, Mapping):
                merged[key] = merge_job_variables(earlier, value)
            else:
                merged[key] = dict(value) if isinstance(value, Mapping) else value
    return merged


# -- the infrastructure block --------------------------------------------------------------------
def _accepts_flow_run_id(cls: type[InfrastructureBlock]) -> bool:
    try:
        parameters = inspect.signature(cls.run).parameters
    except (TypeError, ValueError):
        return False
    return "flow_run_id" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def infrastructure_class(kind: str) -> type[InfrastructureBlock]:
    """The infrastructure block class of a work pool type (``"process"``), from the plugins.

    Raises:
        WorkerError: No installed plugin provides ``kind``, or its class cannot run a flow
            run the worker claimed (its ``run()`` takes no ``flow_run_id``).
    """
    from plait import plugins

    cls = plugins.infrastructure_class(kind)
    if cls is None:
        known = ", ".join(sorted(plugins.infrastructure_kinds())) or "none"
        raise WorkerError(
            f"no installed plugin provides infrastructure {kind!r} (installed: {known}); install the "
            "collection that provides it, or create the work pool with one of those types"
        )
    if not (isinstance(cls, type) and issubclass(cls, InfrastructureBlock)):
        raise WorkerError(f"infrastructure {kind!r} is provided by {cls!r}, which is not an InfrastructureBlock")
    if not _accepts_flow_run_id(cls):
        raise WorkerError(
            f"infrastructure {kind!r} ({cls.__module__}.{cls.__qualname__}) cannot run a flow run a worker "
            "claimed: its run() takes no flow_run_id keyword; upgrade the plugin that provides it"
        )
    return cls


def build_block(
    cls: type[InfrastructureBlock], variables: Mapping[str, Any], code_dir: Path | None
) -> tuple[InfrastructureBlock, list[str]]:
    """An infrastructure block configured by a run's job variables.

    Variables naming a field of the block (``env``, ``working_dir``, ``timeout_seconds``…)
    configure it; the others are returned as ignored. Without a ``working_dir`` variable the
    process starts in the code directory; a relative ``working_dir`` is taken from it. The
    code directory is put first on ``PYTHONPATH`` so that ``module:flow`` entrypoints import.

    Returns:
        ``(block, ignored variable names)``.

    Raises:
        WorkerError: The variables do not make a valid block (the message names the field).
    """
    fields = cls.model_fields
    values = {key: value for key, value in variables.items() if key in fields}
    ignored = sorted(key for key in variables if key not in fields)
    if code_dir is not None and "working_dir" in fields:
        chosen = values.get("working_dir")
        values["working_dir"] = str(code_dir / chosen) if chosen else str(code_dir)
    if code_dir is not None and "env" in fields:
        env = {str(k): str(v) for k, v in dict(values.get("env") or {}).items()}
        earlier = env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code_dir), earlier) if p)
        values["env"] = env
    try:
        block = cls(**values)
    except Exception as exc:  # pydantic's ValidationError names the field, never a secret value
        detail = " ".join(str(exc).split())
        raise WorkerError(
            f"the job variables do not configure a valid {cls.block_type_slug!r} block: {detail}"
        ) from None
    return block, ignored


# -- where the code comes from -------------------------------------------------------------------
@dataclass
class CodeLocation:
    """The directory a run's code is in (None: the worker's current directory).

    Attributes:
        directory: Where the entrypoint's relative path is taken from.
        temporary: True for a downloaded bundle, removed by ``cleanup()``.
        source: For messages: the path, or ``"bundle KEY from BLOCK"``.
    """

    directory: Path | None
    temporary: bool = False
    source: str = "the worker's current directory"

    def cleanup(self) -> None:
        """Remove a downloaded bundle's directory (a deployment's own path is left alone)."""
        if self.temporary and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def fetch_code(deployment: Mapping[str, Any]) -> CodeLocation:
    """Where a deployment's code is: its ``path``, or its bundle downloaded and unzipped.

    A bundle (``storage_block`` ``"slug/name"`` + ``bundle_key``) is read with the storage
    block's ``read_path``, checked against its hash and unpacked into a new temporary
    directory (``plait.deployments``' bundle format); ``cleanup()`` removes it.

    Raises:
        WorkerError: The storage block or the bundle cannot be loaded, or the bundle is bad.
    """
    storage_ref = deployment.get("storage_block")
    if storage_ref:
        from plait.deployments._bundle import fetch_bundle

        key = deployment.get("bundle_key")
        if not key:
            raise WorkerError(
                f"deployment {deployment.get('flow_name')}/{deployment.get('name')} names storage block "
                f"{storage_ref!r} but no bundle_key; deploy it again to upload its code"
            )
        target = Path(tempfile.mkdtemp(prefix="plait-bundle-"))
        try:
            fetch_bundle(str(storage_ref), str(key), target)
        except BaseException as exc:
            shutil.rmtree(target, ignore_errors=True)
            if isinstance(exc, PlaitError):
                raise WorkerError(f"cannot fetch the code bundle: {exc}") from None
            if isinstance(exc, Exception):
                raise WorkerError(
                    f"cannot download the code bundle {key!r} from {storage_ref!r}: {type(exc).__name__}: {exc}"
                ) from None
            raise
        return CodeLocation(target, True, f"bundle {key} from {storage_ref}")
    path = deployment.get("path")
    if path:
        directory = Path(str(path)).expanduser()
        if not directory.is_dir():
            raise WorkerError(
                f"the deployment's path {directory} is not a directory on this machine "
                f"({socket.gethostname()}); run the worker where the code is, or deploy a code bundle"
            )
        return CodeLocation(directory.resolve(), False, str(directory))
    return CodeLocation(None)


def _is_file_reference(where: str) -> bool:
    return where.endswith(".py") or "/" in where or os.sep in where


def resolve_entrypoint(entrypoint: str, code_dir: Path | None) -> str:
    """``entrypoint`` with a relative file path made absolute from the code directory."""
    where, sep, attribute = entrypoint.rpartition(":")
    if not sep or code_dir is None or not _is_file_reference(where) or Path(where).is_absolute():
        return entrypoint
    return f"{code_dir / where}:{attribute}"


# -- stopping a run's process --------------------------------------------------------------------
def _children_of_this_process() -> list[int]:
    me = os.getpid()
    found = []
    try:
        entries = list(_PROC.iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and fields[1] == str(me):
            found.append(int(entry.name))
    return found


def find_run_process(flow_run_id: str, recorded: Mapping[str, Any] | None = None) -> int | None:
    """The pid of the child process running ``flow_run_id``, or None when none is found.

    On Linux: this process's child whose environment holds ``PLAIT_FLOW_RUN_ID`` (exact, and
    independent of what the run recorded). Elsewhere, or when none matches: the pid the run
    recorded, if it recorded this host.
    """
    marker = f"PLAIT_FLOW_RUN_ID={flow_run_id}".encode()
    for pid in _children_of_this_process():
        try:
            environ = (_PROC / str(pid) / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            return pid
    if recorded and recorded.get("pid") and recorded.get("hostname") in (None, socket.gethostname()):
        return int(recorded["pid"])
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def terminate_process_group(pid: int, grace: float) -> str:
    """Stop a run's process and everything it started: SIGTERM, then SIGKILL after ``grace``.

    The process is signalled as a group when it leads one (infrastructure blocks start their
    child in a new session), so grandchildren stop too.

    Returns:
        What was done, for the run's log ("process 123 stopped by SIGTERM", ...).
    """
    if not _POSIX:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return f"process {pid} had already ended"
        return f"process {pid} terminated"
    try:
        group = os.getpgid(pid) == pid
    except ProcessLookupError:
        return f"process {pid} had already ended"

    def send(sig: signal.Signals) -> bool:
        try:
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    if not send(signal.SIGTERM):
        return f"process {pid} had already ended"
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    survived = _alive(pid)
    send(signal.SIGKILL)  # also reaches members of the group that outlived the leader
    what = "process group" if group else "process"
    if survived:
        return f"{what} {pid} did not stop within {grace:g}s of SIGTERM and was killed (SIGKILL)"
    return f"{what} {pid} stopped by SIGTERM"
