"""Concurrency and rate limits end to end (issue 10's acceptance test), on SQLite, on
PostgreSQL and through a real server (``plait server start`` over SQLite).

- 8 flow runs in 8 real processes, released together, each running two task bodies at once:
  with the bodies tagged "db" (limit 2), and with ``plait.concurrency("db")`` around them,
  at most 2 bodies ever overlap, and 2 do.
- A process holding a slot is killed with SIGKILL; a process waiting for it gets the slot
  within seconds (the figure is printed).
- A rate limit of 5 draining 10/s lets 15 acquisitions through in no less than a second.
- Timeouts and strict errors name the limit, its use and its holders; the engine takes no
  slot for a cached task or during a retry delay; a tagged task may ask for its own limit.
- ``plait concurrency-limit`` against the local store and the server.

Each test uses its own limit names; one store (and server) per backend for the module.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import plait
from plait import ThreadPoolTaskRunner, flow, task
from plait._limits import Limits, LocalLimits, RemoteLimits, forget_active_limits
from plait.exceptions import ConcurrencyLimitMissing, ConcurrencySlotTimeout, PlaitError
from plait.testing import throwaway_postgres_database
from plait.testing._server import running_server

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "server"]


@dataclass
class Where:
    """A store (or server) the processes of a test share: their environment, and its limits
    as this process reaches them (through the admin key on a server)."""

    kind: str
    env: dict[str, str]
    limits: Limits


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PLAIT_LOG_TO_CONSOLE="false", **values)
    return env


@pytest.fixture(scope="module", params=BACKENDS)
def where(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Where]:
    from plait._api import ApiConfig, ApiSession
    from plait._store.database import Database

    home = tmp_path_factory.mktemp(f"limits-{request.param}")
    with ExitStack() as stack:
        if request.param == "postgres":
            url = stack.enter_context(throwaway_postgres_database("plait_limits"))
        else:
            url = f"sqlite:///{home / 'plait.db'}"
        if request.param == "server":
            server = stack.enter_context(running_server(url, home / "server"))
            session = stack.enter_context(ApiSession(ApiConfig(server.api_url, server.admin_key, 30.0)))
            env = _env(PLAIT_HOME=str(home / "client"), PLAIT_API_URL=server.api_url,
                       PLAIT_API_KEY=server.run_key)
            yield Where("server", env, RemoteLimits(session))
        else:
            env = _env(PLAIT_HOME=str(home / "home"), PLAIT_DATABASE_URL=url)
            yield Where(request.param, env, LocalLimits(Database.open(url)))


@pytest.fixture
def here(where: Where, monkeypatch: pytest.MonkeyPatch) -> Iterator[Where]:
    """``where``, with this process's settings pointing at it too."""
    for name in [n for n in os.environ if n.startswith("PLAIT_")]:
        monkeypatch.delenv(name)
    for name, value in where.env.items():
        if name.startswith("PLAIT_"):
            monkeypatch.setenv(name, value)
    forget_active_limits()
    yield where
    forget_active_limits()
    from plait._recorder import reset_recorder

    reset_recorder()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def max_overlap(intervals: list[list[float]]) -> int:
    """The most intervals open at one moment (an end at the very moment of a start first)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g}s")
        time.sleep(0.05)


def _stop(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(30)


# -- 8 parallel flow runs --------------------------------------------------------------------
CROWD = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path

    import plait
    from plait import ThreadPoolTaskRunner, flow, task

    name, kind, out, go = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])

    def body(i):
        start = time.time()
        time.sleep(0.25)
        (out / f"{os.getpid()}-{i}.json").write_text(json.dumps([start, time.time()]))

    @task(tags=[name, "not-a-limit"])
    def tagged(i):
        body(i)

    @task
    def in_block(i):
        with plait.concurrency(name, strict=True):
            body(i)

    @flow(task_runner=ThreadPoolTaskRunner(2))
    def crowd():
        for future in (tagged if kind == "tags" else in_block).map(range(2)):
            future.result()

    (out / f"ready-{os.getpid()}").touch()
    while not go.exists():
        time.sleep(0.01)
    sys.exit(0 if crowd(return_state=True).is_completed() else 3)
""")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tags", "block"])
def test_eight_parallel_flow_runs_hold_at_most_the_limit(where: Where, kind: str, tmp_path: Path) -> None:
    name = unique("db")
    where.limits.save(name, 2)
    out, go, script = tmp_path / "out", tmp_path / "go", tmp_path / "crowd.py"
    out.mkdir()
    script.write_text(CROWD)
    processes = [
        subprocess.Popen([sys.executable, str(script), name, kind, str(out), str(go)], env=where.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    try:
        wait_for(lambda: len(list(out.glob("ready-*"))) == 8 or any(p.poll() is not None for p in processes),
                 180, "8 processes ready")
        go.touch()  # all at once: they contend from the first moment
        for process in processes:
            _, err = process.communicate(timeout=240)
            assert process.returncode == 0, err[-3000:]
    finally:
        _stop(processes)
    intervals = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert len(intervals) == 16
    assert max_overlap(intervals) == 2, sorted(intervals)
    row = where.limits.get(name)
    assert row is not None and row["slots"] == [] and row["used"] == 0


# -- a holder killed with SIGKILL --------------------------------------------------------------
HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from plait import flow, task

    name, marker = sys.argv[1], Path(sys.argv[2])

    @task(tags=[name])
    def hold():
        marker.write_text(str(time.time()))
        time.sleep(600)

    @flow
    def holder():
        hold()

    holder()
""")
WAITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from plait import flow, task

    name, marker, ready = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])

    @task(tags=[name])
    def got():
        marker.write_text(str(time.time()))

    @flow
    def waiter():
        got()

    ready.touch()
    waiter()
""")


@pytest.mark.slow
def test_the_slot_of_a_process_killed_with_sigkill_goes_to_a_waiter_within_seconds(
    where: Where, tmp_path: Path
) -> None:
    name = unique("crash")
    where.limits.save(name, 1)
    (tmp_path / "holder.py").write_text(HOLDER)
    (tmp_path / "waiter.py").write_text(WAITER)
    held, got, ready = tmp_path / "held", tmp_path / "got", tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, str(tmp_path / "holder.py"), name, str(held)], env=where.env,
                              stderr=subprocess.PIPE, text=True)
    processes = [holder]
    try:
        wait_for(lambda: held.exists() or holder.poll() is not None, 120, "the holder taking the slot")
        assert holder.poll() is None, holder.communicate()[1]
        waiter = subprocess.Popen([sys.executable, str(tmp_path / "waiter.py"), name, str(got), str(ready)],
                                  env=where.env, stderr=subprocess.PIPE, text=True)
        processes.append(waiter)
        wait_for(ready.exists, 120, "the waiter starting")
        time.sleep(2.0)  # it is waiting now, polling
        assert not got.exists(), "the waiter got a slot the holder still held"
        row = where.limits.get(name)
        assert row is not None and [s["pid"] for s in row["slots"]] == [holder.pid]
        killed_at = time.time()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(30)
        wait_for(got.exists, 60, "the waiter getting the slot")
        latency = float(got.read_text()) - killed_at
        print(f"\ncrash release latency ({where.kind}): {latency:.2f}s")
        assert latency < 8.0
        _, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, err[-3000:]
    finally:
        _stop(processes)
    row = where.limits.get(name)
    assert row is not None and row["slots"] == []


# -- rate limits -------------------------------------------------------------------------------
def test_a_rate_limit_of_5_draining_10_per_second_lets_15_through_in_a_second_or_more(here: Where) -> None:
    name = unique("api")
    here.limits.save(name, 5, slot_decay_per_second=10)
    started = time.monotonic()
    for _ in range(15):
        plait.rate_limit(name)
    elapsed = time.monotonic() - started
    print(f"\n15 acquisitions of a 5 / 10 per second rate limit ({here.kind}): {elapsed:.2f}s")
    assert 1.0 <= elapsed < 6.0
    row = here.limits.get(name)
    assert row is not None and row["slots"] == [] and row["used"] > 0


def test_rate_limit_async_waits_without_blocking_the_event_loop(here: Where) -> None:
    name = unique("api")
    here.limits.save(name, 2, slot_decay_per_second=5)

    async def main() -> tuple[float, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beat = asyncio.create_task(ticker())
        started = time.monotonic()
        for _ in range(5):
            await plait.rate_limit_async(name)
        elapsed = time.monotonic() - started
        beat.cancel()
        return elapsed, ticks

    elapsed, ticks = asyncio.run(main())
    assert elapsed >= 0.55  # 3 past the first 2, at 5 per second
    assert ticks >= elapsed / 0.01 / 4  # the loop kept turning while it waited


# -- timeouts and errors -------------------------------------------------------------------------
def _hold_elsewhere(limits: Limits, name: str, occupy: int) -> list[str]:
    answer = limits.acquire([name], occupy, holder={"hostname": "build-7", "pid": 4242, "label": "the nightly load"})
    assert answer["acquired"], answer
    return list(answer["slot_ids"])


def test_a_timeout_names_the_limit_its_use_and_who_holds_it(here: Where) -> None:
    name = unique("db")
    here.limits.save(name, 2)
    held = _hold_elsewhere(here.limits, name, 2)
    started = time.monotonic()
    with pytest.raises(ConcurrencySlotTimeout) as caught, plait.concurrency(name, timeout_seconds=0.5):
        raise AssertionError("the block ran without a slot")
    assert time.monotonic() - started >= 0.5
    assert isinstance(caught.value, TimeoutError) and isinstance(caught.value, PlaitError)
    message = str(caught.value)
    for part in (repr(name), "2/2 used", "the nightly load", "build-7", "within 0.5s",
                 f"plait concurrency-limit reset {name}"):
        assert part in message, message
    with pytest.raises(ConcurrencySlotTimeout, match=rf"did not get a slot of concurrency limit '{name}'"):
        with plait.concurrency(name, timeout_seconds=0):
            pass
    here.limits.release(held)
    with plait.concurrency(name, occupy=2, timeout_seconds=5) as slots:
        assert len(slots.slot_ids) == 1
        row = here.limits.get(name)
        assert row is not None and row["used"] == 2 and "concurrency() in process" in row["slots"][0]["label"]
    row = here.limits.get(name)
    assert row is not None and row["slots"] == []


def test_a_rate_limit_timeout_and_a_rate_of_a_limit_without_decay(here: Where) -> None:
    name, plain = unique("api"), unique("db")
    here.limits.save(name, 1, slot_decay_per_second=0.1)
    here.limits.save(plain, 3)
    plait.rate_limit(name)
    with pytest.raises(ConcurrencySlotTimeout, match=rf"room for 1 in rate limit '{name}'"):
        plait.rate_limit(name, timeout_seconds=0.3)
    with pytest.raises(ValueError, match="--per-second"):
        plait.rate_limit(plain)
    with pytest.raises(ValueError, match="can never fit"):
        plait.concurrency(plain, occupy=4).__enter__()


def test_strict_refuses_a_name_that_is_no_limit_and_lenient_warns_once(
    here: Where, caplog: pytest.LogCaptureFixture
) -> None:
    name, real = unique("nowhere"), unique("db")
    here.limits.save(real, 1)
    with pytest.raises(ConcurrencyLimitMissing) as caught, plait.concurrency([real, name], strict=True):
        raise AssertionError("the block ran")
    assert isinstance(caught.value, LookupError)
    assert f"plait concurrency-limit create {name} N" in str(caught.value)
    row = here.limits.get(real)
    assert row is not None and row["slots"] == []  # what strict refused was given back
    with pytest.raises(ConcurrencyLimitMissing):
        plait.rate_limit(name, strict=True)
    with caplog.at_level(logging.WARNING, logger="plait.concurrency"):
        for _ in range(3):
            with plait.concurrency(name, timeout_seconds=0):
                pass
    warned = [r for r in caplog.records if name in r.getMessage()]
    assert len(warned) == 1 and "plait concurrency-limit create" in warned[0].getMessage()


def test_bad_arguments_are_refused_before_anything_is_asked() -> None:
    with pytest.raises(ValueError, match="at least one"):
        plait.concurrency([])
    with pytest.raises(ValueError, match="occupy"):
        plait.concurrency("db", occupy=0)
    with pytest.raises(ValueError, match="timeout_seconds"):
        plait.concurrency("db", timeout_seconds=-1)
    with pytest.raises(ValueError, match="control characters"):
        plait.concurrency("d\nb")
    with pytest.raises(TypeError, match="strings"):
        plait.concurrency(["db", 3])  # type: ignore[list-item]


# -- the engine ---------------------------------------------------------------------------------
def test_async_with_and_async_tasks_keep_the_limit_and_the_loop_turning(here: Where) -> None:
    name = unique("db")
    here.limits.save(name, 2)
    open_now = peak = 0

    @task(tags=[name])
    async def tagged(i: int) -> int:
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)
        await asyncio.sleep(0.15)
        open_now -= 1
        return i

    @flow
    async def crowd() -> list[int]:
        async def in_block() -> None:
            async with plait.concurrency(name):
                await asyncio.sleep(0.05)

        futures = [tagged.submit(i) for i in range(6)]
        await asyncio.gather(*(in_block() for _ in range(3)))
        return [await f.result_async() for f in futures]

    assert asyncio.run(crowd()) == list(range(6))
    assert peak == 2
    row = here.limits.get(name)
    assert row is not None and row["slots"] == []


def test_a_tagged_task_may_ask_for_its_own_limit_and_nested_blocks_take_one_slot(here: Where) -> None:
    name = unique("db")
    here.limits.save(name, 1)

    @task(tags=[name])
    def tagged() -> int:
        with plait.concurrency(name, timeout_seconds=2):  # held by this task run already
            row = here.limits.get(name)
            assert row is not None
            return len(row["slots"])

    @flow
    def nested() -> int:
        return tagged()

    assert nested() == 1
    with plait.concurrency(name, timeout_seconds=2), plait.concurrency(name, timeout_seconds=2) as inner:
        assert inner.slot_ids == []  # the outer block of this thread holds it
    row = here.limits.get(name)
    assert row is not None and row["slots"] == []


def test_a_retry_delay_holds_no_slot_and_a_cached_run_takes_none(here: Where) -> None:
    name = unique("db")
    here.limits.save(name, 1)
    attempts: list[float] = []
    seen_during_delay: list[float] = []

    @task(tags=[name], retries=1, retry_delay_seconds=1.5)
    def flaky() -> str:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    @flow
    def retried() -> str:
        return flaky()

    def watch() -> None:
        wait_for(lambda: attempts, 60, "the first attempt")
        time.sleep(0.7)  # inside the 1.5 s delay
        row = here.limits.get(name)
        seen_during_delay.append(row["used"] if row else -1.0)

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert retried() == "ok"
    watcher.join(30)
    assert seen_during_delay == [0.0] and len(attempts) == 2

    calls: list[int] = []

    @task(tags=[name], cache_key_fn=lambda ctx, params: "always-the-same", persist_result=True)
    def cached() -> int:
        calls.append(1)
        return 7

    @flow
    def twice() -> int:
        return cached()

    assert twice() == 7
    held = _hold_elsewhere(here.limits, name, 1)  # no slot left: only a cached run can finish
    try:
        done = threading.Event()
        thread = threading.Thread(target=lambda: (twice(), done.set()))
        thread.start()
        assert done.wait(60), "a cached task run waited for a slot"
        thread.join(30)
    finally:
        here.limits.release(held)
    assert calls == [1]


def test_a_task_run_waiting_for_a_slot_stops_when_its_flow_run_is_cancelled(here: Where) -> None:
    from plait import runtime
    from plait.cli.deployments import flow_run_cancel

    name = unique("db")
    here.limits.save(name, 1)
    held = _hold_elsewhere(here.limits, name, 1)
    run_ids: list[str] = []

    @task(tags=[name])
    def never() -> int:
        raise AssertionError("the body ran without a slot")

    @flow
    def doomed() -> int:
        run_ids.append(runtime.flow_run.id)
        return never()

    def cancel() -> None:
        wait_for(lambda: run_ids, 60, "the flow run starting")
        time.sleep(1.0)  # its task run is waiting by now
        flow_run_cancel(run_ids[0])

    canceller = threading.Thread(target=cancel)
    canceller.start()
    try:
        state = doomed(return_state=True)
    finally:
        canceller.join(60)
        here.limits.release(held)
    assert state.type.value == "CANCELLED", state
    row = here.limits.get(name)
    assert row is not None and row["slots"] == []


def test_tags_that_are_no_limit_or_an_inactive_limit_do_not_wait(here: Where) -> None:
    name = unique("db")
    here.limits.save(name, 1, active=False)
    held = _hold_elsewhere(here.limits, name, 1)  # an inactive limit takes slots from nobody
    assert held == []

    @task(tags=[name, unique("plain-tag")])
    def free(i: int) -> int:
        return i

    @flow(task_runner=ThreadPoolTaskRunner(4))
    def many() -> list[int]:
        return [f.result() for f in free.map(range(8))]

    started = time.monotonic()
    assert many() == list(range(8))
    assert time.monotonic() - started < 30


# -- the CLI ------------------------------------------------------------------------------------
def _plait(where: Where, *args: str, admin: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(where.env)
    if where.kind == "server" and admin:
        assert isinstance(where.limits, RemoteLimits)
        env["PLAIT_API_KEY"] = where.limits.session.config.api_key or ""
    return subprocess.run([sys.executable, "-m", "plait.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_cli_creates_lists_inspects_resets_and_deletes_limits(where: Where) -> None:
    name = unique("db")
    created = _plait(where, "concurrency-limit", "create", name, "2", "--description", "the warehouse", "--json")
    assert created.returncode == 0, created.stderr
    answer = json.loads(created.stdout)
    assert answer["outcome"] == "created" and answer["limit"]["limit"] == 2
    again = _plait(where, "concurrency-limit", "create", name, "2", "--description", "the warehouse")
    assert again.returncode == 0 and again.stdout.startswith(f"Unchanged concurrency limit {name}"), again.stderr
    changed = _plait(where, "concurrency-limit", "create", name, "3", "--per-second", "0.5", "--json")
    assert json.loads(changed.stdout)["outcome"] == "updated"

    listed = json.loads(_plait(where, "concurrency-limit", "ls", "--json").stdout)
    [row] = [r for r in listed if r["name"] == name]
    assert set(row) == {"name", "limit", "slot_decay_per_second", "active", "description", "used", "created",
                        "updated"}
    assert (row["limit"], row["slot_decay_per_second"], row["active"]) == (3, 0.5, True)
    table = _plait(where, "concurrency-limit", "ls")
    assert name in table.stdout and "0.5" in table.stdout

    held = _hold_elsewhere(where.limits, name, 2)
    inspected = _plait(where, "concurrency-limit", "inspect", name, "--json")
    assert inspected.returncode == 0, inspected.stderr
    detail = json.loads(inspected.stdout)
    assert detail["used"] == 2 and [s["id"] for s in detail["slots"]] == held
    [slot] = detail["slots"]
    assert (slot["label"], slot["hostname"], slot["pid"], slot["gone"]) == ("the nightly load", "build-7", 4242, None)
    assert slot["age_seconds"] >= 0
    shown = _plait(where, "concurrency-limit", "inspect", name)
    assert "the nightly load" in shown.stdout and "build-7" in shown.stdout

    reset = _plait(where, "concurrency-limit", "reset", name, "--json")
    assert json.loads(reset.stdout) == {"name": name, "freed": 1}
    deleted = _plait(where, "concurrency-limit", "delete", name, "--yes")
    assert deleted.returncode == 0 and f"Deleted concurrency limit {name}" in deleted.stdout
    missing = _plait(where, "concurrency-limit", "inspect", name)
    assert missing.returncode == 1 and f"no concurrency limit {name!r}" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = _plait(where, "concurrency-limit", "create", " padded", "2")
    assert bad.returncode in (1, 2) and "Error" in bad.stderr and "Traceback" not in bad.stderr


def test_an_unreachable_server_never_fails_a_tagged_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from plait._recorder import reset_recorder
    from plait.testing import free_port

    for name in [n for n in os.environ if n.startswith("PLAIT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PLAIT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    monkeypatch.setenv("PLAIT_LOG_TO_CONSOLE", "false")
    forget_active_limits()

    @task(tags=["db"])
    def tagged() -> int:
        return 1

    @flow
    def offline() -> int:
        return tagged() + tagged()

    try:
        with caplog.at_level(logging.WARNING, logger="plait.concurrency"):
            assert offline() == 2
    finally:
        forget_active_limits()
        reset_recorder()
    warned = [r.getMessage() for r in caplog.records if r.name == "plait.concurrency"]
    assert len(warned) == 1 and "could not read the concurrency limits" in warned[0], warned
