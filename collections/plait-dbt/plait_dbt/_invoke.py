"""Running one dbt command in-process with ``dbtRunner``.

Builds the argument list, forwards dbt's events to the run logger as they happen (dbt fires
them from its worker threads), remembers which artifacts dbt wrote, and keeps the state
``retry_failed_only`` needs between attempts of a task run.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import shlex
import subprocess
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from plait_dbt.exceptions import DbtError, DbtProjectNotFound, DbtReentryError

__all__ = ["EventSink", "check_project", "split_command", "command_name", "invoke"]

# dbt's programmatic API shares process-wide state (flags, event manager, adapters):
# one command at a time per process.
_DBT_LOCK = threading.Lock()

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
LOG_LEVELS = ("debug", "info", "warn", "error")
_TWO_WORD = {"docs", "source"}
# Options plait-dbt adds itself, checked against what the dbt command accepts.
_OPTION_PARAMS = {"select": "select", "exclude": "exclude", "selector": "selector", "full_refresh": "full_refresh"}


# -- the project and the command --------------------------------------------------------------
def check_project(project_dir: str | Path) -> Path:
    """The project directory, resolved; DbtProjectNotFound unless it holds dbt_project.yml."""
    path = Path(project_dir).expanduser().resolve()
    if (path / "dbt_project.yml").is_file():
        return path
    if not path.exists():
        raise DbtProjectNotFound(f"project_dir {path} does not exist; give the directory holding dbt_project.yml")
    if not path.is_dir():
        raise DbtProjectNotFound(f"project_dir {path} is a file; give the directory holding dbt_project.yml")
    nearby = sorted(p.parent for p in path.glob("*/dbt_project.yml"))
    nearby += sorted(p.parent for p in path.glob("*/*/dbt_project.yml"))
    hint = f"; did you mean {nearby[0]}?" if nearby else ""
    raise DbtProjectNotFound(
        f"no dbt_project.yml in {path}: project_dir must be the directory of a dbt project{hint}"
    )


def split_command(command: str | Sequence[str]) -> list[str]:
    """``"dbt build --select x"`` or ``["build", "--select", "x"]`` -> ``["build", "--select", "x"]``."""
    tokens = shlex.split(command) if isinstance(command, str) else [str(t) for t in command]
    if tokens[:1] == ["dbt"]:
        tokens = tokens[1:]
    if not tokens or tokens[0].startswith("-"):
        raise DbtError(f"command {command!r} names no dbt command; give one such as 'build' or 'run --select orders'")
    _dbt_command(tokens)  # raises for an unknown command
    return tokens


def command_name(tokens: Sequence[str]) -> str:
    """``"build"``, or ``"docs generate"`` / ``"source freshness"`` for dbt's two-word commands."""
    if tokens[0] in _TWO_WORD and len(tokens) > 1 and not tokens[1].startswith("-"):
        return f"{tokens[0]} {tokens[1]}"
    return tokens[0]


def _dbt_command(tokens: Sequence[str]) -> Any:
    import click
    from dbt.cli.main import cli

    known = sorted(cli.commands)
    command = cli.commands.get(tokens[0])
    if command is None:
        close = difflib.get_close_matches(tokens[0], known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise DbtError(f"{tokens[0]!r} is not a dbt command; {hint}dbt commands: {', '.join(known)}")
    if isinstance(command, click.Group) and len(tokens) > 1:
        command = command.commands.get(tokens[1], command)
    return command


def check_options(tokens: Sequence[str], **given: Any) -> None:
    """Raise DbtError when an option is given that the dbt command does not take."""
    accepted = {p.name for p in getattr(_dbt_command(tokens), "params", [])}
    refused = [name for name, value in given.items() if value and _OPTION_PARAMS[name] not in accepted]
    if refused:
        raise DbtError(f"dbt {command_name(tokens)} does not take {', '.join(refused)}; leave it out for this command")


def build_args(
    tokens: Sequence[str],
    project_dir: Path,
    profiles_dir: Path | None,
    profile_name: str | None,
    target: str | None,
    select: Sequence[str] = (),
    exclude: Sequence[str] = (),
    selector: str | None = None,
    vars: dict[str, Any] | None = None,  # noqa: A002 - dbt's name
    full_refresh: bool = False,
    state: Path | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    args = list(tokens)
    if select:
        args += ["--select", " ".join(select)]
    if exclude:
        args += ["--exclude", " ".join(exclude)]
    if selector:
        args += ["--selector", selector]
    if vars:
        args += ["--vars", json.dumps(vars, default=str)]
    if full_refresh:
        args += ["--full-refresh"]
    if state is not None:
        args += ["--state", str(state)]
    args += ["--project-dir", str(project_dir)]
    if profiles_dir is not None:
        args += ["--profiles-dir", str(profiles_dir)]
    if profile_name:
        args += ["--profile", profile_name]
    if target:
        args += ["--target", target]
    # dbt's own stdout is replaced by the run logs; no usage events leave the machine.
    # extra_args come last, so e.g. "--log-level info" or "--send-anonymous-usage-stats" win.
    args += ["--log-level", "none", "--no-use-colors", "--no-send-anonymous-usage-stats"]
    return args + list(extra_args)


def shown_args(args: Sequence[str]) -> list[str]:
    """The arguments without the private profiles directory (it is gone after the run)."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--profiles-dir":
            skip = True
            continue
        out.append(arg)
    return out


# -- events --------------------------------------------------------------------------------------
class EventSink:
    """dbt's event callback: log lines to the run logs as they happen, plus bookkeeping.

    Each line is stored once: with the task run of its node when that node is recorded
    (``live``), else with the task run running dbt. dbt's end-of-run recap of a recorded
    node's error is not repeated: the node's own Failed run shows dbt's message once.

    Attributes:
        invocation_id: dbt's invocation id (from the first event).
        artifacts: ``{file name: path}`` of each artifact dbt wrote (manifest.json, run_results.json...).
        errors: Error-level lines, to explain a failure dbt reports no exception for.
        forwarded: How many lines were sent to the run logs.
        live: The LiveNodes recording node task runs, if any.
    """

    def __init__(self, logger: Any, level: str = "info", callbacks: Sequence[Callable[[Any], None]] = ()) -> None:
        if level not in _LEVELS:
            raise DbtError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
        self.logger = logger
        self.level = _LEVELS[level]
        self.callbacks = list(callbacks)
        self.invocation_id: str | None = None
        self.artifacts: dict[str, str] = {}
        self.errors: list[str] = []
        self.forwarded = 0
        self.live: Any = None
        self._lock = threading.Lock()

    def __call__(self, event: Any) -> None:
        if self.live is not None:
            try:
                self.live(event)
            except Exception:  # recording a node must never break dbt
                logging.getLogger("plait_dbt").warning("could not record a dbt node event", exc_info=True)
        try:
            self._handle(event)
        except Exception:  # a log line must never break dbt
            logging.getLogger("plait_dbt").debug("could not forward a dbt event", exc_info=True)
        for callback in self.callbacks:
            try:
                callback(event)
            except Exception as exc:
                self.logger.warning("dbt event callback %r raised %s: %s", callback, type(exc).__name__, exc)

    def _handle(self, event: Any) -> None:
        info = event.info
        if self.invocation_id is None and getattr(info, "invocation_id", ""):
            self.invocation_id = info.invocation_id
        if info.name == "ArtifactWritten":
            path = str(event.data.artifact_path)
            with self._lock:
                self.artifacts[Path(path).name] = path
        level = _LEVELS.get(info.level, logging.INFO)
        if level < self.level:
            return
        text = _ANSI.sub("", info.msg or "").rstrip()
        if not text.strip():
            return
        node = getattr(event.data, "node_info", None)
        unique_id = getattr(node, "unique_id", "") if node is not None else ""
        if level >= logging.ERROR:
            with self._lock:
                self.errors.append(text.strip())
        handle = self.live.handle(unique_id) if self.live is not None and unique_id else None
        if handle is not None:
            if info.name in _RECAP:
                return
            handle.logger.log(level, "%s", text)
        else:
            self.logger.log(level, "%s", text)
        with self._lock:
            self.forwarded += 1


# dbt's end-of-run repetition of a node's error (its node's Failed run already shows it).
_RECAP = frozenset({"RunResultError", "RunResultFailure", "RunResultErrorNoMessage"})


def invoke(args: list[str], sink: EventSink) -> Any:
    """Run dbt with ``args``; return dbt's ``dbtRunnerResult`` (one command at a time).

    Raises:
        DbtReentryError: dbt is already running in this thread, so this call came from
            inside it (waiting for the lock would hang for ever).
    """
    from dbt.cli.main import dbtRunner

    global _owner
    if _owner == threading.get_ident():
        raise DbtReentryError(_reentry_message())
    with _DBT_LOCK:
        _owner = threading.get_ident()
        try:
            return dbtRunner(callbacks=[sink]).invoke(args)
        finally:
            _owner = None


_owner: int | None = None  # the thread running dbt under _DBT_LOCK

ISOLATIONS = ("thread", "process")


class _Outcome:
    """What ``dbtRunner.invoke`` returns, as far as plait-dbt reads it."""

    def __init__(self, success: bool, exception: BaseException | None) -> None:
        self.success = success
        self.exception = exception
        self.result = None


class _Echo:
    """A dbt event rebuilt from the child's JSON line (the attributes plait-dbt reads)."""

    def __init__(self, item: dict[str, Any]) -> None:
        self.info = SimpleNamespace(name=item["name"], level=item["level"], msg=item["msg"],
                                    invocation_id=item.get("invocation_id") or "")
        node = SimpleNamespace(**item["node"]) if item.get("node") else None
        result = SimpleNamespace(timing_info=(), **item["run_result"]) if item.get("run_result") else None
        self.data = SimpleNamespace(node_info=node, run_result=result, artifact_path=item.get("artifact_path"))


def invoke_in_process(args: list[str], sink: EventSink, level: str = "info") -> Any:
    """Run dbt with ``args`` in a child process (``plait_dbt._child``), feeding its events
    to ``sink`` as they arrive; no lock, so several can run at once."""
    child = subprocess.Popen(
        [sys.executable, "-P", "-m", "plait_dbt._child"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, encoding="utf-8",
    )
    tail: list[str] = []

    def read_stderr() -> None:
        assert child.stderr is not None
        for line in child.stderr:
            tail.append(line.rstrip())
            del tail[:-20]

    reader = threading.Thread(target=read_stderr, name="plait-dbt-child-stderr", daemon=True)
    reader.start()
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps({"args": args, "level": level}))
    child.stdin.close()
    final: dict[str, Any] | None = None
    try:
        for line in child.stdout:
            item = json.loads(line)
            if item.get("final"):
                final = item
            else:
                sink(_Echo(item))
    finally:
        if child.poll() is None and final is None:
            child.kill()
        child.wait()
        reader.join(timeout=5)
    if final is None:
        why = "\n".join(tail[-5:]) or f"exit status {child.returncode}"
        return _Outcome(False, DbtError(f"the dbt child process ended without a result: {why}"))
    exception = DbtError(final["exception"]) if final.get("exception") else None
    return _Outcome(bool(final["success"]), exception)


def _reentry_message() -> str:
    script = None
    frame = sys._getframe(1)
    while frame is not None:  # the module dbt was importing when it called us again
        name = str(frame.f_globals.get("__name__", ""))
        if frame.f_code.co_name == "<module>" and name.startswith("dbt_"):
            script = frame.f_globals.get("__file__") or name
        frame = frame.f_back  # type: ignore[assignment]
    what = f"{script}" if script else "a module whose name starts with dbt_"
    return (
        f"dbt_run was called again while dbt was already running in this thread: dbt imports every "
        f"module named dbt_*.py it finds on sys.path as a dbt plugin, and importing {what} started "
        f"its flow a second time. Put the flow call under `if __name__ == \"__main__\":` in that "
        f"script, or rename it so its name does not start with dbt_."
    )


# -- retry_failed_only bookkeeping -------------------------------------------------------------
_FAILED_ATTEMPTS: OrderedDict[tuple, tuple[str, str | None]] = OrderedDict()
_KEEP = 256


def remember_failure(key: tuple, run_results_path: str | None, invocation_id: str | None) -> None:
    """The attempt ``key`` failed, leaving ``run_results_path`` for ``dbt retry``."""
    if run_results_path is None:
        _FAILED_ATTEMPTS.pop(key, None)
        return
    _FAILED_ATTEMPTS[key] = (run_results_path, invocation_id)
    _FAILED_ATTEMPTS.move_to_end(key)
    while len(_FAILED_ATTEMPTS) > _KEEP:
        _FAILED_ATTEMPTS.popitem(last=False)


def forget(key: tuple) -> None:
    _FAILED_ATTEMPTS.pop(key, None)


def retry_state(key: tuple) -> Path | None:
    """The directory of the previous attempt's run_results.json, if ``dbt retry`` can use it:
    the file is still the one that attempt wrote and it lists failed or skipped nodes."""
    entry = _FAILED_ATTEMPTS.get(key)
    if entry is None:
        return None
    path, invocation_id = entry
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if invocation_id and (data.get("metadata") or {}).get("invocation_id") != invocation_id:
        return None  # another dbt command wrote there since
    retryable = {"error", "fail", "skipped", "runtime error", "partial success"}
    if not any(r.get("status") in retryable for r in data.get("results") or []):
        return None
    return Path(path).parent
