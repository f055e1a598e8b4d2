"""plait benchmarks: every row of the speed issue's table, beside a plain-Python baseline
measured in the same run, the issue's target and the ratio plait/baseline.

    make bench                     # or: python bench/run.py [--quick] [--json]
    make bench PROFILE=1           # or: python bench/run.py --profile [DIR]

Every case runs in a fresh child process with its own PLAIT_HOME (SQLite history, default
plugins), never in this one. Figures are medians of several runs; peak RSS is the child's
own (os.wait4). A row misses its target by more than 20% -> the exit status is 1; rows
without a target print "-" and never fail. --profile runs each plait case once more under
cProfile and writes DIR/<case>.prof and DIR/<case>.txt (top 30 by cumulative time); the
table's figures come from the runs without the profiler. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
PLAIT_CLI = str(Path(PYTHON).parent / "plait")
SLACK = 1.2  # a figure above target * SLACK fails the run

# Each script prints its figure (seconds unless said) on its last line. PRELUDE comes first
# in the plait ones: flush_history() waits for the recorder's thread to write what it holds,
# so a timing includes recording the history, not just queueing it.
PRELUDE = '''
import sys, time
from plait import flow, task

def flush_history():
    from plait._recorder import get_recorder
    get_recorder().flush()
'''
SCRIPTS: dict[str, str] = {
    "import_plait": "import time; t = time.perf_counter(); import plait; print(time.perf_counter() - t)\n",
    "import_baseline": "import time; t = time.perf_counter(); import json; print(time.perf_counter() - t)\n",
    "whole_process": PRELUDE + '''
@task
def hello(name):
    return f"hello {name}"

@flow
def greet():
    return hello("world")

greet()
''',
    "whole_process_baseline": '''
def hello(name):
    return f"hello {name}"

def greet():
    return hello("world")

greet()
''',
    # the first call pays the fixed cost, the second the same work without it
    "first_call": PRELUDE + '''
@task
def hello(name):
    return f"hello {name}"

@flow
def greet():
    return hello("world")

t0 = time.perf_counter(); greet(); flush_history()
t1 = time.perf_counter(); greet(); flush_history()
t2 = time.perf_counter()
print((t1 - t0) - (t2 - t1))
''',
    # the floor of "open the store and check its schema": raw sqlite3, one small write
    "first_call_baseline": '''
import os, time
t = time.perf_counter()
import sqlite3
con = sqlite3.connect(os.path.join(os.environ["PLAIT_HOME"], "baseline.db"))
con.execute("pragma journal_mode=wal")
con.execute("pragma user_version").fetchone()
con.execute("create table if not exists t (id text primary key, value text)")
con.execute("insert or replace into t values (?, ?)", ("a", "b"))
con.commit()
con.close()
print(time.perf_counter() - t)
''',
    # marginal cost: (time of 2N tasks - time of N tasks) / N, so the flow's own cost cancels
    "sequential": PRELUDE + '''
if "--no-journal" in sys.argv:  # a bench-only patch, not a setting
    import plait._recorder
    assert hasattr(plait._recorder, "_open_journal"), "plait._recorder._open_journal is gone: update bench/run.py"
    plait._recorder._open_journal = lambda *args: None
N = int(sys.argv[1])

@task
def noop(i):
    return i

@flow
def seq(n):
    for i in range(n):
        noop(i)

def timed(n):
    t = time.perf_counter(); seq(n); flush_history(); return time.perf_counter() - t

timed(10)  # warm-up: opens the database, checks migrations
print((timed(2 * N) - timed(N)) / N)
''',
    "sequential_baseline": '''
import sys, time
N = int(sys.argv[1])
def noop(i):
    return i
def seq(n):
    for i in range(n):
        noop(i)
t = time.perf_counter(); seq(N); print((time.perf_counter() - t) / N)
''',
    "map": PRELUDE + '''
N = int(sys.argv[1])

@task
def inc(i):
    return i + 1

@flow
def fan_out(n):
    return sum(inc.map(range(n)).result())

fan_out(10); flush_history()  # warm-up
t = time.perf_counter()
assert fan_out(N) == N * (N + 1) // 2
flush_history()
print(time.perf_counter() - t)
''',
    "map_baseline": '''
import sys, time
N = int(sys.argv[1])
def inc(i):
    return i + 1
t = time.perf_counter(); assert sum([inc(i) for i in range(N)]) == N * (N + 1) // 2
print(time.perf_counter() - t)
''',
    # a flow run of N task runs, each one's result the next one's argument (data edges)
    "chain": PRELUDE + '''
from plait import runtime
N = int(sys.argv[1])

@task
def step(x):
    return x + 1

@flow
def chain(n):
    x = 0
    for _ in range(n):
        x = step.submit(x)
    assert x.result() == n
    return runtime.flow_run.id

print(chain(N))
''',
    "json_baseline": '''
import json, sys
with open(sys.argv[1]) as f:
    print(json.dumps(json.load(f), indent=2))
''',
}


class CaseError(Exception):
    """A benchmark case's process failed or printed no figure."""


@dataclass
class Done:
    """What one child process did."""

    stdout: str
    stderr: str
    wall: float  # seconds, start to exit
    rss_mb: float  # its peak resident set, MB (10^6 bytes)

    @property
    def figure(self) -> float:
        try:
            return float(self.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise CaseError(f"a case printed no figure on its last line:\n{self.stdout[-500:]}") from None


@dataclass
class Row:
    """One line of the table: the figure must be <= target (None: no target)."""

    what: str
    plait: float
    baseline: float | None
    unit: str
    target: float | None = None
    target_text: str = "-"

    @property
    def ratio(self) -> float | None:
        return self.plait / self.baseline if self.baseline else None

    @property
    def failed(self) -> bool:
        return self.target is not None and self.plait > SLACK * self.target

    @property
    def status(self) -> str:
        if self.target is None:
            return "-"
        if self.plait <= self.target:
            return "ok"
        over = f"+{(self.plait / self.target - 1) * 100:.0f}%" if self.target > 0 else ""
        return f"FAIL {over}" if self.failed else f"miss {over}"


class Bench:
    """Runs cases in child processes and collects the rows and profiles."""

    def __init__(self, quick: bool, profile_dir: Path | None, scripts_dir: Path) -> None:
        self.quick = quick
        self.repeat = 3 if quick else 5
        self.profile_dir = profile_dir
        self.scripts_dir = scripts_dir
        self.rows: list[Row] = []
        self.profiles: list[Path] = []
        self._warm: Path | None = None
        self.warm_run_id = ""
        for name, text in SCRIPTS.items():
            (scripts_dir / f"{name}.py").write_text(text)

    def script(self, name: str) -> str:
        return str(self.scripts_dir / f"{name}.py")

    def add(self, what: str, plait: float, baseline: float | None, unit: str, target: float | None = None,
            target_text: str = "-") -> None:
        self.rows.append(Row(what, plait, baseline, unit, target, target_text))

    def spawn(self, argv: list[str], home: Path, api_url: str | None = None, timeout: float = 900) -> Done:
        """Run ``argv`` to its end with PLAIT_HOME=``home``; its wall time and peak RSS."""
        env = {**os.environ, "PLAIT_HOME": str(home), "PLAIT_LOG_TO_CONSOLE": "false"}
        for name in ("PLAIT_DATABASE_URL", "PLAIT_API_URL", "PLAIT_API_KEY", "PLAIT_PLUGINS"):
            env.pop(name, None)
        if api_url:
            env["PLAIT_API_URL"] = api_url
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=home)
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            timer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            done = Done(out.read().decode(), err.read().decode(), wall, usage.ru_maxrss * 1024 / 1e6)
        if proc.returncode != 0:
            what = " ".join(Path(a).name for a in argv[:5])
            raise CaseError(f"{what} exited with {proc.returncode}:\n{done.stderr[-3000:]}")
        return done

    def runs(self, name: str, *args: str, home: Path | None = None, api_url: str | None = None,
             repeat: int | None = None) -> list[Done]:
        """``repeat`` runs of a script, each in a fresh PLAIT_HOME unless ``home`` is given."""
        results = []
        for _ in range(repeat or self.repeat):
            with self.home(home) as where:
                results.append(self.spawn([PYTHON, self.script(name), *args], where, api_url))
        return results

    @contextmanager
    def home(self, given: Path | None = None) -> Iterator[Path]:
        if given is not None:
            yield given
            return
        with tempfile.TemporaryDirectory(prefix="plait-bench-") as made:
            yield Path(made)

    def warm_home(self) -> Path:
        """A PLAIT_HOME whose store exists and holds one flow run of 1,000 task runs."""
        if self._warm is None:
            self._warm = self.scripts_dir / "warm-home"  # removed with the scripts
            self._warm.mkdir()
            done = self.spawn([PYTHON, self.script("chain"), "1000"], self._warm)
            self.warm_run_id = done.stdout.strip().splitlines()[-1]
        return self._warm

    def profile(self, case: str, argv: list[str], home: Path | None = None, api_url: str | None = None) -> None:
        """With --profile: ``argv`` (a script and its arguments) once more under cProfile."""
        if self.profile_dir is None:
            return
        prof = self.profile_dir / f"{case}.prof"
        with self.home(home) as where:
            self.spawn([PYTHON, "-m", "cProfile", "-o", str(prof), *argv], where, api_url)
        with open(prof.with_suffix(".txt"), "w") as text:
            pstats.Stats(str(prof), stream=text).sort_stats("cumulative").print_stats(30)
        self.profiles.append(prof)


# -- the rows ------------------------------------------------------------------------------
def row_import(b: Bench) -> None:
    plait = median([d.figure for d in b.runs("import_plait", home=b.warm_home())])
    base = median([d.figure for d in b.runs("import_baseline")])
    b.add("import plait (inside the process; stdlib json as baseline)", plait * 1e3, base * 1e3, "ms")


def row_whole_process(b: Bench) -> None:
    plait = median([d.wall for d in b.runs("whole_process", home=b.warm_home())])
    base = median([d.wall for d in b.runs("whole_process_baseline")])
    b.add("whole process: import, one flow with one task, exit", plait, base, "s", 0.25, "<= 0.25 s")
    b.profile("whole_process", [b.script("whole_process")], b.warm_home())


def row_first_call(b: Bench) -> None:
    plait = median([d.figure for d in b.runs("first_call", home=b.warm_home())])
    base = median([d.figure for d in b.runs("first_call_baseline")])
    b.add("first flow call's fixed cost (1st - 2nd call; base: sqlite3)", plait * 1e3, base * 1e3, "ms",
          30, "<= 30 ms")
    b.profile("first_call", [b.script("first_call")], b.warm_home())


def rows_sequential(b: Bench) -> None:
    n = "2000" if b.quick else "5000"
    base = median([d.figure for d in b.runs("sequential_baseline", n)]) * 1e6
    on = [d.figure * 1e6 for d in b.runs("sequential", n)]
    local = median(on)
    b.add(f"sequential no-op tasks, marginal per task, history ({n}/{2 * int(n)})", local, base, "µs/task",
          35, "<= 35 µs")
    b.profile("sequential", [b.script("sequential"), n])
    # what durability against kill -9 costs: journal on vs off; "measurable" means more
    # than the spread of the journalled runs themselves
    off = median([d.figure * 1e6 for d in b.runs("sequential", n, "--no-journal")])
    spread = max(on) - min(on)
    b.add(f"journal cost per task (on - off; spread of runs {spread:.1f} µs)", local - off, local, "µs/task",
          spread, "<= spread of runs")

    from plait.testing import running_server  # the harness only: the cases run in children

    with tempfile.TemporaryDirectory(prefix="plait-bench-server-") as server_home:
        with running_server(f"sqlite:///{server_home}/plait.db", Path(server_home), auth=False) as server:
            remote = median([d.figure * 1e6 for d in b.runs("sequential", n, api_url=server.api_url)])
            b.profile("sequential_remote", [b.script("sequential"), n], api_url=server.api_url)
    b.add("the same, recorded to a local plait server (base: local)", remote, local, "µs/task",
          2 * local, "<= 2x the local figure")


def rows_map(b: Bench) -> None:
    sizes = ((10_000, 0.5, None), (100_000, 5.0, 400.0))
    for size, target_s, target_mb in sizes[:1] if b.quick else sizes:
        repeat = 1 if b.quick or size > 10_000 else 3
        plait = b.runs("map", str(size), repeat=repeat)
        base = b.runs("map_baseline", str(size), repeat=repeat)
        b.add(f".map {size:,} no-op tasks, wall inside the process", median([d.figure for d in plait]),
              median([d.figure for d in base]), "s", target_s, f"<= {target_s:g} s")
        b.add(f".map {size:,} no-op tasks, peak RSS", max(d.rss_mb for d in plait), max(d.rss_mb for d in base),
              "MB", target_mb, f"<= {target_mb:g} MB" if target_mb else "-")
        b.profile(f"map_{size}", [b.script("map"), str(size)])


def cli_walls(b: Bench, *args: str) -> list[float]:
    home = b.warm_home()
    b.spawn([PLAIT_CLI, *args], home)  # warm-up: the OS file cache, not plait's
    return [b.spawn([PLAIT_CLI, *args], home).wall for _ in range(b.repeat)]


def row_cli_ls(b: Bench) -> None:
    plait = median(cli_walls(b, "flow-run", "ls"))
    base = median([b.spawn([PYTHON, "-c", "pass"], b.warm_home()).wall for _ in range(b.repeat)])
    b.add("any CLI call: `plait flow-run ls` (base: python -c pass)", plait, base, "s", 0.25, "<= 0.25 s")
    b.profile("cli_flow_run_ls", [PLAIT_CLI, "flow-run", "ls"], b.warm_home())


def row_cli_inspect(b: Bench) -> None:
    home = b.warm_home()
    args = ("flow-run", "inspect", "--json", b.warm_run_id)
    output = home / "inspect.json"
    output.write_text(b.spawn([PLAIT_CLI, *args], home).stdout)
    task_runs = len(json.loads(output.read_text()).get("task_runs") or ())
    if task_runs != 1000:
        raise CaseError(f"the inspected flow run shows {task_runs} task runs, not the 1,000 the chain made")
    plait = median(cli_walls(b, *args))
    base = median([d.wall for d in b.runs("json_baseline", str(output), home=home)])
    b.add("`plait flow-run inspect --json`, 1,000 task runs (no dbt)", plait, base, "s", 0.3, "<= 0.3 s")
    b.profile("cli_flow_run_inspect", [PLAIT_CLI, *args], home)


def server_bench(b: Bench, script: str, *args: str) -> str:
    """Run one of the server benchmarks; its printed lines (it exits 1 when it misses)."""
    with b.home() as home:
        env = {**os.environ, "PLAIT_HOME": str(home), "PLAIT_LOG_TO_CONSOLE": "false"}
        done = subprocess.run([PYTHON, str(ROOT / "bench" / script), *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
    if done.returncode not in (0, 1):
        raise CaseError(f"bench/{script} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


def p95_ms(text: str, marker: str, script: str) -> float:
    found = re.search(re.escape(marker) + r".*?p95 (\d+(?:\.\d+)?) ?ms", text)
    if not found:
        raise CaseError(f"bench/{script} printed no p95 after {marker!r}:\n{text}")
    return float(found.group(1))


def row_stream(b: Bench) -> None:
    events = "10" if b.quick else "30"
    p95 = p95_ms(server_bench(b, "stream_latency.py", "--events", events), "event to subscriber", "stream_latency.py")
    b.add(f"server: event to stream subscriber, p95 ({events} events)", p95, None, "ms", 1000, "<= 1 s")


def row_automation(b: Bench) -> None:
    out = server_bench(b, "automation_latency.py", "--rate", "100", "--seconds", "1")
    p95 = p95_ms(out, "event -> action", "automation_latency.py")
    b.add("server: event to automation action, p95 (100 events at 100/s)", p95, None, "ms", 1000, "<= 1 s")


def row_list_latency(b: Bench) -> None:
    runs = "20000" if b.quick else "100000"
    with b.home() as home:
        url = f"sqlite:///{home}/big.db"
        b.spawn([PYTHON, str(ROOT / "bench" / "store_gen.py"), "--url", url, "--flow-runs", runs], home)
        done = b.spawn([PYTHON, str(ROOT / "bench" / "list_latency.py"), "--url", url, "--json",
                        "--repeat", "10" if b.quick else "30"], home)
    results = json.loads(done.stdout)["results"]
    worst = max(results, key=lambda r: r["p95_ms"])
    query = worst["query"].split(": ", 1)[-1]
    b.add(f"store list/get, worst p95 of {len(results)} ({int(runs):,} runs; {query})", worst["p95_ms"], None,
          "ms", 50, "<= 50 ms")


ROWS: list[Callable[[Bench], None]] = [
    row_whole_process, row_import, row_first_call, rows_sequential, rows_map, row_cli_ls, row_cli_inspect,
    row_stream, row_automation, row_list_latency,
]


# -- output --------------------------------------------------------------------------------
def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    for limit, spec in ((100, ",.0f"), (10, ".1f"), (1, ".2f")):
        if abs(value) >= limit:
            return format(value, spec)
    return f"{value:.3f}"


def print_table(rows: list[Row]) -> None:
    width = max(len(r.what) for r in rows)
    print(f"{'case':<{width}} {'plait':>9} {'baseline':>9} {'unit':<8} {'x base':>8}  {'target':<22} status")
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:,.1f}x"
        print(f"{r.what:<{width}} {fmt(r.plait):>9} {fmt(r.baseline):>9} {r.unit:<8} {ratio:>8}  "
              f"{r.target_text:<22} {r.status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller sizes, no 100k map")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--profile", nargs="?", const=str(ROOT / "bench" / "profiles"), metavar="DIR",
                        help="write a cProfile .prof and a top-30 .txt per case into DIR (default bench/profiles)")
    opts = parser.parse_args()
    profile_dir = Path(opts.profile).resolve() if opts.profile else None
    if profile_dir:
        profile_dir.mkdir(parents=True, exist_ok=True)
    errors = []
    with tempfile.TemporaryDirectory(prefix="plait-bench-scripts-") as scripts:
        bench = Bench(opts.quick, profile_dir, Path(scripts))
        for row in ROWS:
            try:
                row(bench)
            except (CaseError, subprocess.TimeoutExpired, KeyError) as exc:
                errors.append(f"{row.__name__}: {exc}")
                print(f"benchmark {row.__name__} failed: {exc}", file=sys.stderr)
    if opts.json:
        print(json.dumps([{**asdict(r), "ratio": r.ratio, "status": r.status} for r in bench.rows], indent=2))
    else:
        print_table(bench.rows)
    if bench.profiles:
        print(f"\nprofiles ({len(bench.profiles)} cases, .prof and top-30 .txt): {profile_dir}", file=sys.stderr)
    failed = [r.what for r in bench.rows if r.failed]
    if failed or errors:
        print(f"\n{len(failed)} target(s) missed by more than {SLACK - 1:.0%}, {len(errors)} case(s) failed",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
