"""Static typing of the public API: mypy --strict on small programs a user would write.

Each snippet marks what mypy must say on a line: ``# R: <type>`` for the type
``reveal_type`` reveals there, ``# E: <code>`` for an error of that code. A line without a
mark must draw no error at all. All snippets are checked in one mypy run, as a user's
project would be (plait found through the installed package and its ``py.typed``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import plait
from plait import PlaitFuture, PlaitFutureList, Task

slow = pytest.mark.slow  # one cold mypy run analyses plait and its dependencies (~10 s)

COMMON = '''
import asyncio
from typing import Any, cast
import plait
from plait import PlaitFuture, State, ThreadPoolTaskRunner, flow, task, unmapped


@task
def add(x: int, y: int) -> int:
    return x + y


@task(retries=1, name="fetch-page")
async def fetch(url: str) -> bytes:
    return url.encode()


@flow
def totals(n: int) -> list[int]:
    return [add(i, 1) for i in range(n)]


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
async def pages(urls: list[str]) -> int:
    return len(urls)
'''

SNIPPETS = {
    # (a) arguments are checked against the function's own signature
    "wrong_arguments.py": '''
def body() -> None:
    add(1, "two")  # E: call-overload
    add(1)  # E: call-overload
    add.submit(1, "two")  # E: call-overload
    add.submit(1, 2, 3)  # E: call-overload
    totals("3")  # E: call-overload
    text: str = add(1, 2)  # E: assignment
    also: str = add.submit(1, 2).result()  # E: assignment
    many: list[str] = add.map([1, 2], [3, 4]).result()  # E: assignment
    state: int = add(1, 2, return_state=True)  # E: assignment
    fetch.submit(3)  # E: call-overload
    raw: bytes = fetch("u")  # E: assignment


async def abody() -> None:
    count: str = await pages(["u"])  # E: assignment
    value: int = await fetch("u")  # E: assignment
''',
    # (b) futures carry the task's return type; (c) flows; (d) async tasks give awaitables
    "revealed.py": '''
def body(flag: bool) -> None:
    reveal_type(add(1, 2))  # R: builtins.int
    reveal_type(add(1, 2, return_state=True))  # R: plait.states.State
    reveal_type(add(1, 2, return_state=False, wait_for=[]))  # R: builtins.int
    reveal_type(add.submit(1, 2))  # R: plait.futures.PlaitFuture[builtins.int]
    reveal_type(add.submit(1, 2).result())  # R: builtins.int
    reveal_type(add.submit(1, 2, wait_for=[]).result(timeout=5))  # R: builtins.int
    reveal_type(add.submit(1, 2).result(raise_on_failure=False))  # R: builtins.int | builtins.BaseException
    reveal_type(add.map([1, 2], [3, 4]))  # R: plait.futures.PlaitFutureList[builtins.int]
    reveal_type(add.map([1, 2], [3, 4]).result())  # R: builtins.list[builtins.int]
    reveal_type(add.map([1, 2], unmapped(3)).result())  # R: builtins.list[builtins.int]
    reveal_type(add.with_options(retries=2).submit(1, 2))  # R: plait.futures.PlaitFuture[builtins.int]
    reveal_type(add)  # R: plait.tasks.Task[[x: builtins.int, y: builtins.int], builtins.int]
    reveal_type(totals(3))  # R: builtins.list[builtins.int]
    reveal_type(totals(3, return_state=True))  # R: plait.states.State
    reveal_type(fetch.submit("u"))  # R: plait.futures.PlaitFuture[builtins.bytes]
    reveal_type(fetch.submit("u").result())  # R: builtins.bytes
    reveal_type(fetch.map(["u", "v"]).result())  # R: builtins.list[builtins.bytes]
    call = reveal_type(fetch("u"))  # R: typing.Coroutine[Any, Any, builtins.bytes]
    call.close()  # never awaited here: only its type matters
    run = reveal_type(pages(["u"]))  # R: typing.Coroutine[Any, Any, builtins.int]
    run.close()


async def abody() -> None:
    reveal_type(await fetch("u"))  # R: builtins.bytes
    reveal_type(await fetch("u", return_state=True))  # R: plait.states.State
    reveal_type(await fetch.submit("u"))  # R: builtins.bytes
    reveal_type(await fetch.submit("u").result_async())  # R: builtins.bytes
    reveal_type(await pages(["u"]))  # R: builtins.int
    reveal_type(await pages(["u"], return_state=True))  # R: plait.states.State
''',
    # (e) a correct program: no error at all under --strict
    "correct.py": '''
@task
def double(x: int) -> int:
    return 2 * x


@flow(name="pipeline", retries=1)
def pipeline(n: int = 3) -> dict[str, Any]:
    first: PlaitFuture[int] = add.submit(1, 2)
    after = add.submit(2, 3, wait_for=[first])
    chained = add.submit(cast(int, first), 1)  # a future passed on: the engine resolves it
    doubled = double.map(range(n))
    done, not_done = plait.wait([first, after, *doubled])
    check = add(1, 2, return_state=True)
    faster = double.with_options(retries=0)
    mapped: list[int] = doubled.result()
    value: int = first.result() + after.result(timeout=10) + faster(4) + chained.result()
    outcome = after.result(raise_on_failure=False)
    return {
        "value": value,
        "mapped": mapped,
        "ok": check.is_completed() and not not_done and all(f.state.is_completed() for f in done),
        "failed": isinstance(outcome, BaseException),
    }


@flow
async def crawl(urls: list[str]) -> list[bytes]:
    one: bytes = await fetch(urls[0])
    rest = [await f for f in fetch.map(urls[1:])]
    submitted = await fetch.submit(urls[0]).result_async()
    return [one, submitted, *rest]


def main() -> None:
    result: dict[str, Any] = pipeline(4)
    state: State = pipeline(return_state=True)
    total: int = sum(totals(3))
    fetched: list[bytes] = asyncio.run(crawl(["a", "b", "c"]))
    assert result == {"value": 20, "mapped": [0, 2, 4, 6], "ok": True, "failed": False}, result
    assert state.is_completed() and total == 6 and fetched == [b"a", b"a", b"b", b"c"], fetched
    print("all as typed")


if __name__ == "__main__":
    main()
''',
}

_LINE = re.compile(r"^(?P<file>[\w.]+):(?P<line>\d+): (?P<kind>error|note): (?P<text>.*?)(?:  \[(?P<code>[\w-]+)\])?$")
_MARK = re.compile(r"#\s*(?P<kind>[RE]):\s*(?P<what>.+?)\s*$")


Report = tuple[dict[str, str], list[dict[str, str]], str]  # sources, diagnostics, mypy's output


def _sources() -> dict[str, str]:
    return {name: textwrap.dedent(COMMON) + textwrap.dedent(body) for name, body in SNIPPETS.items()}


def _expected(source: str) -> dict[int, tuple[str, str]]:
    marks = {}
    for number, line in enumerate(source.splitlines(), 1):
        found = _MARK.search(line)
        if found:
            marks[number] = (found["kind"], found["what"])
    return marks


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    where = tmp_path_factory.mktemp("typing")
    sources = _sources()
    for name, source in sources.items():
        (where / name).write_text(source)
    env = dict(os.environ)
    env.pop("MYPYPATH", None)  # plait comes from the installed package, as for a user
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-color-output", "--no-error-summary",
         "--show-error-codes", "--cache-dir", str(where / ".mypy_cache"), *SNIPPETS],
        cwd=where, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode in (0, 1), f"mypy did not run:\n{proc.stdout}\n{proc.stderr}"
    lines = [m.groupdict() for m in map(_LINE.match, proc.stdout.splitlines()) if m]
    assert lines, f"no mypy diagnostics could be read:\n{proc.stdout}"
    return sources, lines, proc.stdout


def _check(name: str, report: Report) -> None:
    sources, lines, output = report
    expected = _expected(sources[name])
    assert expected or name == "correct.py"
    mine = [line for line in lines if line["file"] == name]
    errors = {(int(e["line"]), e["code"]) for e in mine if e["kind"] == "error"}
    revealed = {int(n["line"]): n["text"] for n in mine if n["text"].startswith("Revealed type is")}
    want_errors = {(line, what) for line, (kind, what) in expected.items() if kind == "E"}
    assert errors == want_errors, f"{name}: mypy said\n{output}"
    for line, (kind, what) in expected.items():
        if kind == "R":
            assert revealed.get(line) == f'Revealed type is "{what}"', f"{name}:{line}: mypy said\n{output}"


@slow
def test_wrong_arguments_are_type_errors(mypy_report: Report) -> None:
    _check("wrong_arguments.py", mypy_report)
    sources, lines, _ = mypy_report
    # the error names the task's own signature, not a bare *args/**kwargs
    call = sources["wrong_arguments.py"].splitlines().index('    add(1, "two")  # E: call-overload') + 1
    notes = [n["text"] for n in lines if n["file"] == "wrong_arguments.py" and int(n["line"]) == call]
    assert any("def __call__(self, x: int, y: int) -> int" in text for text in notes), notes


@slow
def test_futures_flows_and_async_tasks_carry_types(mypy_report: Report) -> None:
    _check("revealed.py", mypy_report)


@slow
def test_correct_program_has_no_errors(mypy_report: Report) -> None:
    _check("correct.py", mypy_report)
    _, lines, output = mypy_report
    assert not [line for line in lines if line["file"] == "correct.py"], output


@slow
def test_correct_program_runs_as_typed(tmp_path: Path) -> None:
    """The program mypy accepts also runs, with the values its annotations promise."""
    program = tmp_path / "correct.py"
    program.write_text(_sources()["correct.py"])
    env = dict(os.environ, PLAIT_HOME=str(tmp_path / "home"))
    env.pop("PLAIT_DATABASE_URL", None)
    env.pop("PLAIT_FLOW_RUN_ID", None)
    proc = subprocess.run([sys.executable, str(program)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all as typed" in proc.stdout


def test_generic_classes_subscript_at_run_time() -> None:
    """Annotations evaluated at run time (pydantic, get_type_hints) need real generics."""
    assert PlaitFuture[int].__origin__ is PlaitFuture
    assert PlaitFutureList[int]().result() == []
    assert Task[[int, int], int].__origin__ is Task
    assert plait.Flow[[int], str].__origin__ is plait.Flow


def test_the_package_ships_its_types() -> None:
    assert (Path(plait.__file__).parent / "py.typed").is_file()
