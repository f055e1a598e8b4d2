"""Running a flow run in another process: what infrastructure blocks build on.

An infrastructure block (the built-in ``Process``, or a container or cluster block from a
collection) launches ``python -m plait.infrastructure ENTRYPOINT --parameters JSON`` with
``PLAIT_FLOW_RUN_ID`` set, so the launcher knows the id of the run before it exists and can
follow it in the run history. This module holds both sides:

- the child: ``load_flow()`` and ``main()`` load the flow, run it and exit with
  0 (Completed), 1 (Failed, Crashed or Cancelled) or 2 (bad entrypoint or parameters);
- the launcher: ``new_flow_run_id()``, ``child_environment()``, ``flow_run_state()``,
  ``record_infrastructure_log()``, ``settle_records()``, ``mark_flow_run()`` and
  ``decode_control_line()``.

When ``PLAIT_INFRASTRUCTURE_CONTROL=1`` the child writes lines that plait itself produced
as *control lines* on stderr (``"\\x1e"`` + JSON): run log lines it already stored (the
launcher echoes them but does not store them again) and the reason it could not start a run.
Every other line the child prints is the launcher's to echo and store.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plait.exceptions import PlaitError
from plait.flows import Flow

__all__ = [
    "EntrypointError",
    "load_flow",
    "main",
    "new_flow_run_id",
    "child_environment",
    "flow_run_state",
    "flow_run_summary",
    "record_infrastructure_log",
    "flush_records",
    "mark_flow_run",
    "run_crash_hooks",
    "settle_records",
    "decode_control_line",
    "CONTROL_ENV",
    "CONTROL_PREFIX",
    "INFRASTRUCTURE_LOGGER",
    "EXIT_COMPLETED",
    "EXIT_FAILED",
    "EXIT_BAD_INPUT",
]

INFRASTRUCTURE_LOGGER = "plait.infrastructure"
CONTROL_ENV = "PLAIT_INFRASTRUCTURE_CONTROL"
CONTROL_PREFIX = "\x1e"  # ASCII record separator: no program prints it by accident
EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

logger = logging.getLogger(INFRASTRUCTURE_LOGGER)


class EntrypointError(PlaitError, ValueError):
    """An entrypoint does not name a flow that can be loaded (the message says why)."""


# -- the child side: loading and running the flow ---------------------------------------------
def _split_entrypoint(entrypoint: str) -> tuple[str, str]:
    where, sep, attribute = entrypoint.strip().rpartition(":")
    if not sep or not where or not attribute:
        raise EntrypointError(
            f"entrypoint {entrypoint!r} must look like 'path/to/file.py:flow_name' "
            "or 'package.module:flow_name'"
        )
    return where, attribute


def _is_file_reference(where: str) -> bool:
    return where.endswith(".py") or "/" in where or os.sep in where


def _load_file(path_text: str) -> Any:
    path = Path(path_text).expanduser()
    if not path.is_file():
        shown = path if path.is_absolute() else f"{path} (from {Path.cwd()})"
        reason = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise EntrypointError(f"flow file {shown} {reason}")
    path = path.resolve()
    # Siblings of the flow file are importable from it, as when running `python file.py`.
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    name = f"_plait_entrypoint_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise EntrypointError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, pickle and typing look modules up by name
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(name, None)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise EntrypointError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _load_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise EntrypointError(
                f"no module named {name!r} (searched from {Path.cwd()}); give a module on "
                "sys.path or a file path such as 'flows/etl.py:etl'"
            ) from None
        raise EntrypointError(f"importing module {name!r} failed: {exc}") from exc
    except Exception as exc:
        raise EntrypointError(f"importing module {name!r} failed: {type(exc).__name__}: {exc}") from exc


def _flows_in(module: Any) -> list[str]:
    return sorted(name for name, value in vars(module).items() if isinstance(value, Flow))


def load_flow(entrypoint: str) -> Flow[..., Any]:
    """The flow an entrypoint names.

    Args:
        entrypoint: ``"path/to/file.py:flow_name"`` (a relative path is taken from the
            current directory) or ``"package.module:flow_name"``. ``flow_name`` is the
            attribute holding the flow (dots reach into objects); a flow's own name
            (``@flow(name=...)``) is accepted too.

    Raises:
        EntrypointError: The file or module cannot be found or imported, it has no such
            attribute (the message lists the flows it does have), or the attribute is not a
            flow.
    """
    where, attribute = _split_entrypoint(entrypoint)
    module = _load_file(where) if _is_file_reference(where) else _load_module(where)
    origin = getattr(module, "__file__", None) or where
    value: Any = module
    try:
        for part in attribute.split("."):
            value = getattr(value, part)
    except AttributeError:
        by_name = [v for v in vars(module).values() if isinstance(v, Flow) and v.name == attribute]
        if len(by_name) == 1:
            return by_name[0]
        found = _flows_in(module)
        listing = f"flows found there: {', '.join(found)}" if found else "no flows were found there"
        raise EntrypointError(f"{origin} has no flow {attribute!r}; {listing}") from None
    if not isinstance(value, Flow):
        kind = "a function" if callable(value) else f"a {type(value).__name__}"
        hint = "; decorate it with @flow" if callable(value) else ""
        raise EntrypointError(f"{attribute!r} in {origin} is {kind}, not a flow{hint}")
    return value


def _parse_parameters(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    if text == "-":
        text = sys.stdin.read()
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise EntrypointError(f"--parameters is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise EntrypointError(
            f"--parameters must be a JSON object of parameter names to values, got {type(value).__name__}"
        )
    return value


def _emit_control(kind: str, **fields: Any) -> None:
    line = CONTROL_PREFIX + json.dumps({"kind": kind, **fields})
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class _ControlLineHandler(logging.Handler):
    """Echoes run log records as control lines: the launcher shows them without storing
    them a second time (the child's recorder already stored them)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _emit_control("log", text=self.format(record))
        except Exception:
            self.handleError(record)


def _is_run_record(record: logging.LogRecord) -> bool:
    return getattr(record, "flow_run_id", None) is not None or getattr(record, "task_run_id", None) is not None


def _mark_console_run_logs() -> None:
    """Send stored run log lines to the launcher as control lines instead of plain stderr."""
    from plait._logging import setup_logging

    setup_logging()
    plait_logger = logging.getLogger("plait")
    consoles = [
        h for h in plait_logger.handlers if getattr(h, "_plait", False) and isinstance(h, logging.StreamHandler)
    ]
    for console in consoles:
        console.addFilter(lambda record: not _is_run_record(record))
        marked = _ControlLineHandler()
        marked.setFormatter(console.formatter)
        marked.addFilter(_is_run_record)
        plait_logger.addHandler(marked)


def _fail(message: str, control: bool) -> int:
    if control:
        _emit_control("error", message=message)
    else:
        print(f"Error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def main(argv: Sequence[str] | None = None) -> int:
    """Run one flow as a child of an infrastructure block; return the exit status.

    ``python -m plait.infrastructure ENTRYPOINT [--parameters JSON]``: ``JSON`` is an object
    of keyword arguments (``-`` reads it from stdin). The flow run takes its id from
    ``PLAIT_FLOW_RUN_ID`` when set. Exit status: 0 when the run Completed, 1 when it ended
    otherwise (Failed, Crashed, Cancelled), 2 when the entrypoint or parameters are bad.
    """
    parser = argparse.ArgumentParser(
        prog="python -m plait.infrastructure",
        description="Run one flow (used by infrastructure blocks such as Process).",
    )
    parser.add_argument("entrypoint", help="path/to/file.py:flow_name or package.module:flow_name")
    parser.add_argument("--parameters", default=None, help="JSON object of keyword arguments ('-': read stdin)")
    # run_crash_hooks: call the flow's on_crashed hooks for a run whose process died
    parser.add_argument("--crashed", metavar="FLOW_RUN_ID", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--message", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    control = os.environ.pop(CONTROL_ENV, "") == "1"  # not inherited by the flow's own children
    try:
        flow = load_flow(args.entrypoint)
        parameters = _parse_parameters(args.parameters)
        if flow.options.validate_parameters:
            flow.signature.bind(f"flow {flow.name!r}", (), parameters)
    except (EntrypointError, TypeError) as exc:  # TypeError: ParameterBindError
        return _fail(str(exc), control)
    if args.crashed:
        return _call_crash_hooks(flow, args.crashed, args.message, parameters)
    if control:
        _mark_console_run_logs()
    if flow.is_async:
        state = asyncio.run(flow(**parameters, return_state=True))
    else:
        state = flow(**parameters, return_state=True)
    return EXIT_COMPLETED if state.is_completed() else EXIT_FAILED


def _call_crash_hooks(flow: Flow[..., Any], flow_run_id: str, message: str, parameters: dict[str, Any]) -> int:
    hooks = flow.options.on_crashed
    if not hooks:
        print(f"flow {flow.name!r} has no on_crashed hooks")
        return EXIT_COMPLETED
    from plait._hooks import RunHooks
    from plait._runs import FlowRun, advance
    from plait.states import State, StateType

    summary = flow_run_summary(flow_run_id) or {}
    run = FlowRun(id=flow_run_id, flow_name=flow.name, name=str(summary.get("name") or flow_run_id),
                  parameters=parameters, state=State(StateType.PENDING))
    state = advance(run, State(StateType.CRASHED, message or str(summary.get("state_message") or "crashed")))
    RunHooks(hooks, flow, run, state).run_sync()
    flush_records()  # what the hooks logged
    print(f"called {len(hooks)} on_crashed hook{'s' if len(hooks) > 1 else ''} of flow {flow.name!r}")
    return EXIT_COMPLETED


# -- the launcher side ---------------------------------------------------------------------------
def run_crash_hooks(
    entrypoint: str,
    flow_run_id: str,
    message: str,
    *,
    parameters: dict[str, Any] | None = None,
    python: str | None = None,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> str:
    """Call the ``on_crashed`` hooks of the flow at ``entrypoint`` for a run whose process
    died before it could (killed, timed out): the launcher that saw the crash calls this, as
    Prefect's runner does. The hooks run in a fresh interpreter started like the run's own
    (``python``, ``cwd``, ``env``); what they log is stored with the run.

    Returns:
        A line for the run's log: what happened (nothing to do, done, or why not).
    """
    import subprocess

    command = [python or sys.executable, "-m", "plait.infrastructure", entrypoint, f"--crashed={flow_run_id}",
               f"--message={message}", f"--parameters={json.dumps(parameters or {})}"]
    child_env = child_environment(flow_run_id, base=env)
    child_env.pop(CONTROL_ENV, None)
    try:
        done = subprocess.run(command, cwd=cwd, env=child_env, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"on_crashed hooks could not run: {type(exc).__name__}: {exc}"
    if done.returncode != EXIT_COMPLETED:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        return f"on_crashed hooks could not run (exit {done.returncode}): {tail[0]}"
    said = done.stdout.decode("utf-8", "replace").strip().splitlines()
    return said[-1] if said else "on_crashed hooks: done"
def new_flow_run_id() -> str:
    """A fresh flow run id, for a launcher to pass to its child as ``PLAIT_FLOW_RUN_ID``."""
    from plait._callables import new_id

    return new_id()


def child_environment(
    flow_run_id: str, extra: dict[str, str] | None = None, *, base: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment for a child that runs ``flow_run_id`` in the launcher's database.

    Starts from ``base`` (default ``os.environ``), adds ``extra``, then pins what the
    launcher and the child must agree on: ``PLAIT_FLOW_RUN_ID``, the absolute
    ``PLAIT_HOME`` and ``PLAIT_DATABASE_URL`` of the effective settings (a relative SQLite
    path is made absolute, since the child may start in another directory), unbuffered
    output and control lines.
    """
    from plait._store.database import absolute_database_url
    from plait.settings import get_settings

    settings = get_settings()
    env = dict(os.environ if base is None else base)
    env.update(extra or {})
    url = absolute_database_url(settings.effective_database_url)
    env["PLAIT_HOME"] = str(Path(settings.home).expanduser().resolve())
    env["PLAIT_DATABASE_URL"] = url
    env["PLAIT_FLOW_RUN_ID"] = flow_run_id
    env["PYTHONUNBUFFERED"] = "1"  # lines reach the launcher as they are printed
    env[CONTROL_ENV] = "1"
    return env


def _history_on() -> bool:
    from plait.settings import get_settings

    return get_settings().record_history


def flow_run_summary(flow_run_id: str) -> dict[str, Any] | None:
    """``{id, flow_name, name, state_type, state_message, pid}`` of a flow run, or None if unknown.

    Reads the row as stored, without crash detection (a launcher decides that itself): from
    the plait server when ``PLAIT_API_URL`` is set (where the child recorded it), else from
    the local store.

    Raises:
        DatabaseError: The database cannot be read.
        ApiError: The server cannot be asked (``plait._api``).
    """
    from plait.settings import get_settings

    if get_settings().api_url:
        from plait._api import ApiSession
        from plait._api._errors import ApiNotFound

        with ApiSession.from_settings() as session:
            try:
                run = session.call(session.calls.flow_run(flow_run_id))
            except ApiNotFound:
                return None
        return {key: run.get(key) for key in ("id", "flow_name", "name", "state_type", "state_message", "pid")}
    from plait._store import runs
    from plait._store.database import get_database

    return runs.flow_run_summary(get_database(), flow_run_id)


def flow_run_state(flow_run_id: str) -> str | None:
    """The stored state type of a flow run (``"COMPLETED"``, ``"RUNNING"``...), or None.

    Raises:
        DatabaseError: The database cannot be read.
    """
    summary = flow_run_summary(flow_run_id)
    return summary["state_type"] if summary else None


def record_infrastructure_log(flow_run_id: str, level: int | str, message: str) -> None:
    """Store a log line with a flow run (logger ``plait.infrastructure``); returns at once.

    Lines are buffered by the process-wide recorder and written within a second, or at
    ``flush_records()``. Registered secret values are masked. Nothing is stored when
    ``PLAIT_RECORD_HISTORY`` is off.

    Raises:
        DatabaseError: The database cannot be opened.
    """
    from plait._masking import mask as scrub
    from plait._runs import utcnow

    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            level = logging.INFO
    if not _history_on():
        return
    from plait._recorder import get_recorder

    get_recorder().add_log(flow_run_id, None, level, INFRASTRUCTURE_LOGGER, scrub(message), utcnow())


def flush_records() -> None:
    """Write what this process's recorder holds (e.g. infrastructure logs) now.

    Raises:
        DatabaseError: The write failed.
    """
    if not _history_on():
        return
    from plait._recorder import get_recorder

    get_recorder().flush()


def settle_records() -> None:
    """Store what is waiting before a run is judged: this process's buffered records, and
    what dead processes of this host journaled but never wrote (a child killed with -9
    mid-run leaves its completed task runs in its journal): to the plait server when
    ``PLAIT_API_URL`` is set (``plait._spool``), else into the local store
    (``plait._recovery``).

    Raises:
        DatabaseError: The local store cannot be written.
    """
    if not _history_on():
        return
    flush_records()
    from plait.settings import get_settings

    settings = get_settings()
    if settings.api_url:
        from plait._spool import deliver_pending

        deliver_pending(settings)  # never raises: what it cannot deliver stays spooled
        return
    from plait._recovery import recover_journals
    from plait._store.database import get_database

    recover_journals(get_database(), settings.home)


def mark_flow_run(
    flow_run_id: str,
    state_type: str,
    message: str,
    *,
    flow_name: str = "unknown",
    parameters: dict[str, Any] | None = None,
    pid: int | None = None,
) -> bool:
    """End a flow run its process could not end: Crashed or Failed, with an end time.

    If the run exists and is not final, it and its unfinished subflow and task runs take
    ``state_type`` (a final run is left alone). If it does not exist (the child died or gave
    up before its flow started), a flow run row is created in that state, so the failure is
    visible in ``plait flow-run ls``. With ``PLAIT_API_URL`` set, the server does this
    (``POST /flow-runs/{id}/end``), as it holds the run's records.

    Args:
        flow_run_id: The run's id.
        state_type: ``"CRASHED"``, ``"FAILED"`` or ``"CANCELLED"`` (locally, any final type).
        message: The state message (why).
        flow_name: Flow name for a row that has to be created.
        parameters: Parameters for a row that has to be created.
        pid: Process id for a row that has to be created.

    Returns:
        True when a state was written, False when the run was already final (or history
        is off).

    Raises:
        ValueError: ``state_type`` is not a final state type.
        DatabaseError: The database cannot be written.
        ApiError: The server refused or did not answer.
    """
    from plait._store import runs
    from plait._store.database import get_database
    from plait.states import StateType

    try:
        kind = StateType(state_type.upper())
    except ValueError:
        raise ValueError(f"unknown state type {state_type!r}") from None
    if not kind.is_final:
        raise ValueError(f"mark_flow_run() ends a run: give a final state type, not {kind.value}")
    if not _history_on():
        return False
    settle_records()  # its records (and our log lines) first, so they sort before the final state
    from plait._callables import jsonable, run_name
    from plait.settings import get_settings

    settings = get_settings()
    if settings.api_url:  # the run's records go to a server: so does its end
        from plait._api import ApiSession

        with ApiSession.from_settings(settings) as session:
            call = session.calls.end_flow_run(
                flow_run_id, kind.value, message, flow_name=flow_name, pid=pid,
                parameters={str(k): jsonable(v) for k, v in (parameters or {}).items()},
            )
            return bool(session.call(call)["ended"])
    info = {
        "flow_name": flow_name, "name": run_name(),
        "parameters": {str(k): jsonable(v) for k, v in (parameters or {}).items()}, "pid": pid,
    }
    ended = runs.end_flow_runs(get_database(), {flow_run_id: message}, kind, subflows=True,
                               create={flow_run_id: info})
    return bool(ended)


def decode_control_line(line: str) -> dict[str, Any] | None:
    """The control record in a line the child wrote to stderr, or None for an ordinary line.

    ``{"kind": "log", "text": ...}``: a run log line the child already stored (show it, do
    not store it); ``{"kind": "error", "message": ...}``: why the child could not start the
    flow run (it exits with status 2).
    """
    if not line.startswith(CONTROL_PREFIX):
        return None
    try:
        record = json.loads(line[len(CONTROL_PREFIX):])
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and "kind" in record else None


if __name__ == "__main__":
    sys.exit(main())
