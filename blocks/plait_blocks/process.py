"""``Process``: run a flow in a new Python process on this machine.

The launcher picks the flow run's id, starts ``python -m plait.infrastructure ENTRYPOINT
--parameters JSON`` with ``PLAIT_FLOW_RUN_ID`` set (and the same database), streams the
child's output into the run's logs, and decides how the run ended from the exit status and
what the child recorded.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any, ClassVar

from pydantic import Field, field_validator

from plait.blocks import InfrastructureBlock, InfrastructureResult
from plait.infrastructure import (
    CONTROL_ENV,
    EXIT_BAD_INPUT,
    INFRASTRUCTURE_LOGGER,
    child_environment,
    decode_control_line,
    flow_run_summary,
    flush_records,
    mark_flow_run,
    new_flow_run_id,
    record_infrastructure_log,
    run_crash_hooks,
)

__all__ = ["Process"]

logger = logging.getLogger(INFRASTRUCTURE_LOGGER)

# Set by the launcher itself: a block's env must not point the child elsewhere.
_RESERVED_ENV = ("PLAIT_FLOW_RUN_ID", "PLAIT_HOME", "PLAIT_DATABASE_URL", CONTROL_ENV)
_KILL_GRACE_SECONDS = 3.0  # between SIGTERM and SIGKILL of the process group
_READER_JOIN_SECONDS = 5.0  # a grandchild may hold the pipes open after the child exits
_READ_CHUNK = 64 * 1024
_MAX_LINE = 1024 * 1024  # longer lines are stored in pieces of this size
_ARG_LIMIT = 32 * 1024  # larger parameters go through stdin, not the command line
_POSIX = os.name == "posix"
_FINAL = ("COMPLETED", "CACHED", "FAILED", "CRASHED", "CANCELLED")


class Process(InfrastructureBlock):
    """Runs a flow in a new Python process on this machine.

    ``run("path/to/file.py:flow_name", parameters)`` starts ``python -m plait.infrastructure``
    in its own process group, with this process's environment plus ``env``, in
    ``working_dir``. The child records its flow run in the same database (its ``PLAIT_*``
    settings are inherited), and every line it prints outside run loggers (``print()``,
    libraries writing to stdout or stderr) is echoed and stored in the run's logs:
    stdout lines at INFO, stderr lines at WARNING.

    How the run ends:

    - exit status 0: the state the child recorded (Completed);
    - a non-zero exit after the child recorded a final state (e.g. Failed, with the
      flow's error as its message): that state;
    - a bad entrypoint or parameters (exit status 2): Failed, with the child's reason;
      a flow run is created for it so the failure shows in ``plait flow-run ls``;
    - killed by a signal, by anyone, before finishing: Crashed, "process N killed by SIGKILL";
    - ``timeout_seconds`` passed: plait kills the whole process group (SIGTERM, then SIGKILL
      after 3 seconds) and the run is Crashed, "timed out after Ns". Crashed rather than
      Failed because the flow did not fail: it was stopped from outside, like any kill.

    Values in ``env`` are never logged or shown in ``repr()``; keys are. Prefer a
    ``Secret`` block loaded inside the flow for credentials: a saved ``Process`` stores
    ``env`` as plain configuration.
    """

    block_type_slug: ClassVar[str] = "process"
    block_type_name: ClassVar[str] = "Process"
    code_example: ClassVar[str] = """\
from plait_blocks import Process

process = Process(env={"STAGE": "prod"}, working_dir="/srv/etl", timeout_seconds=3600)
result = process.run("flows/etl.py:nightly", {"day": "2024-05-01"})
print(result.state_type, result.flow_run_id, result.message)
# plait flow-run logs <flow_run_id> shows what the flow logged and printed
"""

    env: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Extra environment variables for the flow's process, on top of this process's "
            "environment. Values are never logged. PLAIT_FLOW_RUN_ID, PLAIT_HOME and "
            "PLAIT_DATABASE_URL are set by the launcher and may not be given."
        ),
    )
    working_dir: str | None = Field(
        default=None,
        description=(
            "Directory the process starts in (default: the current one); a relative entrypoint path is "
            "resolved from it."
        ),
    )
    timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Kill the process group and mark the run Crashed after this many seconds (default: no limit).",
    )
    python: str | None = Field(
        default=None,
        description=(
            "Python interpreter to run the flow with; plait must be installed in it (default: this interpreter)."
        ),
    )
    stream_output: bool = Field(
        default=True,
        description=(
            "Echo the process's stdout and stderr here as it runs (they are stored in the run's logs either way)."
        ),
    )

    @field_validator("env")
    @classmethod
    def _no_reserved_keys(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(k for k in value if k.upper() in _RESERVED_ENV)
        if reserved:
            raise ValueError(
                f"{', '.join(reserved)} cannot be set in env: the launcher sets it so that it and "
                "the flow's process share one run history"
            )
        bad = sorted(k for k in value if not k or "=" in k or "\x00" in k)
        if bad:
            raise ValueError(f"invalid environment variable name(s): {bad!r}")
        return value

    @field_validator("working_dir", "python", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "env" and isinstance(value, dict):
                value = {key: "***" for key in value}
            yield name, value

    def run(
        self, entrypoint: str, parameters: dict[str, Any] | None = None, *, flow_run_id: str | None = None
    ) -> InfrastructureResult:
        """Run the flow at ``entrypoint`` with ``parameters`` (keyword arguments) and wait.

        Args:
            entrypoint: ``"path/to/file.py:flow_name"`` or ``"package.module:flow_name"``.
            parameters: The flow's keyword arguments; must be JSON-serializable.
            flow_run_id: The run to execute, when it exists already (a worker's claimed run);
                default: a new one.

        Returns:
            How the run ended: its id, final state type, exit code (None when the process
            could not start) and state message. ``details`` holds the ``pid``, the
            ``command`` (without parameters), the ``signal`` that killed it if any,
            ``timed_out`` and ``duration_seconds``.

        Raises:
            ValueError: ``entrypoint`` is empty or ``parameters`` are not JSON-serializable.
            KeyboardInterrupt: Re-raised after killing the process and marking the run Crashed.
        """
        if not isinstance(entrypoint, str) or not entrypoint.strip():
            raise ValueError("entrypoint must be 'path/to/file.py:flow_name' or 'package.module:flow_name'")
        parameters = dict(parameters or {})
        try:
            payload = json.dumps(parameters)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"parameters must be JSON-serializable to reach the flow's process: {exc}") from None
        return _Launch(self, entrypoint.strip(), parameters, payload, flow_run_id).run()


class _Launch:
    """One run of a Process block: the child, its readers and the verdict."""

    def __init__(
        self, block: Process, entrypoint: str, parameters: dict[str, Any], payload: str, flow_run_id: str | None
    ) -> None:
        self.block = block
        self.entrypoint = entrypoint
        self.parameters = parameters
        self.payload = payload
        self.flow_run_id = flow_run_id or new_flow_run_id()
        self.flow_name = entrypoint.rpartition(":")[2] or entrypoint
        self.python = block.python or sys.executable
        self.command = [self.python, "-m", "plait.infrastructure", entrypoint]
        self.proc: subprocess.Popen[bytes] | None = None
        self.error_message: str | None = None  # why the child refused to start the run
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self.timed_out = False
        self.wrote_crash = False  # this launcher, not the run's process, ended it Crashed
        self._record_failed = False
        self._echo_lock = threading.Lock()

    # -- logging ----------------------------------------------------------------------------
    def log(self, level: int, message: str) -> None:
        """Log a launcher message here and store it with the flow run."""
        logger.log(level, "flow run %s: %s", self.flow_run_id, message)
        self.store(level, message)

    def store(self, level: int, message: str) -> None:
        try:
            record_infrastructure_log(self.flow_run_id, level, message)
        except Exception as exc:  # the run goes on; its output is still echoed
            if not self._record_failed:
                self._record_failed = True
                logger.warning("cannot store the output of flow run %s: %s", self.flow_run_id, exc)

    def echo(self, text: str, stream: IO[str]) -> None:
        if not self.block.stream_output:
            return
        with self._echo_lock:
            try:
                stream.write(text + "\n")
                stream.flush()
            except (OSError, ValueError):  # a closed console must not stop the run
                pass

    # -- the child ----------------------------------------------------------------------------
    def run(self) -> InfrastructureResult:
        block = self.block
        big = len(self.payload) > _ARG_LIMIT
        command = self.command + ["--parameters", "-" if big else self.payload]
        env = child_environment(self.flow_run_id, block.env)
        extra = f"; extra env: {', '.join(sorted(block.env))}" if block.env else ""
        self.log(logging.INFO, f"starting {' '.join(self.command)} in {block.working_dir or os.getcwd()}{extra}")
        started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                command,
                cwd=block.working_dir,
                env=env,
                stdin=subprocess.PIPE if big else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                **_new_group_options(),
            )
        except OSError as exc:
            reason = exc.strerror or str(exc)
            where = f" in {block.working_dir}" if block.working_dir else ""
            message = f"could not start {self.python}{where}: {reason}"
            return self.finish(self.end("FAILED", message), None, started)
        proc = self.proc
        self.log(logging.INFO, f"process {proc.pid} started")
        readers = [
            threading.Thread(target=self.pump, args=(proc.stdout, False), name="plait-process-stdout", daemon=True),
            threading.Thread(target=self.pump, args=(proc.stderr, True), name="plait-process-stderr", daemon=True),
        ]
        if big:
            feeder = threading.Thread(target=self.feed, args=(proc.stdin,), name="plait-process-stdin", daemon=True)
            readers.append(feeder)
        for reader in readers:
            reader.start()
        try:
            try:
                proc.wait(timeout=block.timeout_seconds)
            except subprocess.TimeoutExpired:
                self.timed_out = True
                self.log(logging.ERROR, f"timed out after {block.timeout_seconds:g}s; killing process group {proc.pid}")
                _kill_group(proc)
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: leave nothing behind
            _kill_group(proc)
            self.end("CRASHED", f"interrupted: the launcher got {type(exc).__name__}; plait killed process {proc.pid}")
            raise
        deadline = time.monotonic() + _READER_JOIN_SECONDS
        for reader in readers:
            reader.join(max(0.0, deadline - time.monotonic()))
        return self.finish(self.verdict(proc.returncode), proc.returncode, started)

    def feed(self, stdin: IO[bytes] | None) -> None:
        if stdin is None:
            return
        try:
            stdin.write(self.payload.encode())
        except OSError:  # BrokenPipeError: the child exited before reading; its exit says why
            pass
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def pump(self, pipe: IO[bytes] | None, is_stderr: bool) -> None:
        if pipe is None:
            return
        level = logging.WARNING if is_stderr else logging.INFO
        stream = sys.stderr if is_stderr else sys.stdout
        try:
            for raw in _lines(pipe):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if is_stderr:
                    control = decode_control_line(line)
                    if control is not None:
                        self.on_control(control)
                        continue
                    if line.strip():
                        self.stderr_tail.append(line)
                self.echo(line, stream)
                self.store(level, line)
        except (OSError, ValueError):  # the pipe was closed under us
            pass
        finally:
            try:
                pipe.close()
            except OSError:
                pass

    def on_control(self, control: dict[str, Any]) -> None:
        if control["kind"] == "log":
            self.echo(str(control.get("text", "")), sys.stderr)  # the child stored it already
        elif control["kind"] == "error":
            self.error_message = str(control.get("message", ""))
            self.echo(f"Error: {self.error_message}", sys.stderr)
            self.store(logging.ERROR, self.error_message)

    # -- the verdict ------------------------------------------------------------------------
    def recorded(self) -> dict[str, Any] | None:
        try:
            return flow_run_summary(self.flow_run_id)
        except Exception as exc:
            logger.warning("cannot read flow run %s: %s", self.flow_run_id, exc)
            return None

    def end(self, state_type: str, message: str, *, logged: bool = False) -> tuple[str, str]:
        """Record ``state_type`` unless the run already ended; return the state it has.

        ``message`` is also logged, unless ``logged`` says it already was.
        """
        if not logged:
            self.log(logging.ERROR, message)
        try:
            written = mark_flow_run(
                self.flow_run_id, state_type, message, flow_name=self.flow_name,
                parameters=self.parameters, pid=self.proc.pid if self.proc else None,
            )
        except Exception as exc:
            logger.error("cannot record that flow run %s ended %s: %s", self.flow_run_id, state_type, exc)
            return state_type, message
        self.wrote_crash = bool(written) and state_type == "CRASHED"
        if not written:  # it reached a final state meanwhile: that one stands
            summary = self.recorded()
            if summary is not None and summary["state_type"] in _FINAL:
                return summary["state_type"], summary["state_message"] or ""
        return state_type, message

    def crashed(self, message: str) -> tuple[str, str]:
        """End the run Crashed and, since its process could not, call its on_crashed hooks."""
        ended = self.end("CRASHED", message)
        if self.wrote_crash:
            env = {**os.environ, **self.block.env}
            self.log(logging.INFO, run_crash_hooks(
                self.entrypoint, self.flow_run_id, message, parameters=self.parameters, python=self.python,
                cwd=self.block.working_dir, env=env))
        return ended

    def verdict(self, code: int) -> tuple[str, str]:
        pid = self.proc.pid if self.proc else None
        summary = self.recorded()
        state = summary["state_type"] if summary else None
        final = state in _FINAL
        if self.timed_out:
            if final:  # it finished in the instant before the kill
                return state, summary["state_message"] or ""  # type: ignore[return-value,index]
            return self.crashed(f"timed out after {self.block.timeout_seconds:g}s; plait killed process {pid}")
        if code >= 0:
            self.log(logging.INFO, f"process {pid} exited with code {code}")
        if final:
            return state, summary["state_message"] or ""  # type: ignore[return-value,index]
        if code < 0:
            return self.crashed(f"process {pid} killed by {_signal_name(-code)}")
        if code == EXIT_BAD_INPUT and self.error_message:
            return self.end("FAILED", self.error_message, logged=True)  # on_control stored it
        if code == 0 and summary is None:
            # The child recorded nothing (its PLAIT_RECORD_HISTORY is off): trust the exit status.
            self.log(logging.WARNING, "the flow recorded no run history; trusting the exit status")
            return "COMPLETED", "process exited with code 0 (no run history recorded)"
        why = f"process {pid} exited with code {code} before its flow run finished"
        if code != 0 and self.stderr_tail:
            why += f": {self.stderr_tail[-1].strip()}"
        return self.end("CRASHED", why)

    def finish(self, outcome: tuple[str, str], code: int | None, started: float) -> InfrastructureResult:
        state_type, message = outcome
        try:
            flush_records()
        except Exception as exc:
            logger.warning("cannot store the output of flow run %s: %s", self.flow_run_id, exc)
        return InfrastructureResult(
            flow_run_id=self.flow_run_id,
            state_type=state_type,
            exit_code=code,
            message=message,
            details={
                "pid": self.proc.pid if self.proc else None,
                "command": list(self.command),
                "signal": _signal_name(-code) if code is not None and code < 0 else None,
                "timed_out": self.timed_out,
                "duration_seconds": round(time.monotonic() - started, 3),
            },
        )


def _lines(pipe: IO[bytes]) -> Any:
    """Lines of ``pipe`` as bytes, a line longer than ``_MAX_LINE`` in pieces of that size."""
    pieces: list[bytes] = []
    size = 0
    while True:
        chunk = pipe.readline(_READ_CHUNK)
        if not chunk:
            if pieces:
                yield b"".join(pieces)
            return
        pieces.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n") or size >= _MAX_LINE:
            line = b"".join(pieces)
            pieces, size = [], 0
            while len(line) > _MAX_LINE:
                yield line[:_MAX_LINE]
                line = line[_MAX_LINE:]
            if line:
                yield line


def _new_group_options() -> dict[str, Any]:
    if _POSIX:
        return {"start_new_session": True}  # its own process group: a kill reaches its children
    return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the child and everything it started: SIGTERM to the group, SIGKILL after a grace."""
    if not _POSIX:
        proc.kill()
        proc.wait()
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=_KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    try:  # also reaches grandchildren that outlived the child or ignored SIGTERM
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
