"""plait benchmarks: speed and memory against a plain-Python baseline measured in the same run.

    make bench            # or: python bench/run.py [--quick]

Each case runs in a fresh subprocess with its own PLAIT_HOME (SQLite history on, so every
figure includes recording run history). Figures are medians of several runs; peak RSS is
the child's max resident set size. Targets are from the core-engine issue.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

CASES: dict[str, str] = {
    # name -> script; each prints one JSON object
    "import_plait": "import time; t = time.perf_counter(); import plait; print(time.perf_counter() - t)",
    "import_baseline": "import time; t = time.perf_counter(); import json; print(time.perf_counter() - t)",
    "sequential_plait": textwrap.dedent(
        """
        import sys, time
        from plait import flow, task
        N = int(sys.argv[1])

        @task
        def noop(i):
            return i

        @flow
        def seq():
            for i in range(N):
                noop(i)

        seq()  # warm-up: opens the database, applies migrations
        t = time.perf_counter(); seq(); print(time.perf_counter() - t)
        """
    ),
    # the same flow with the recorder's journal switched off (a bench-only patch, not a
    # setting): the difference is what durability against kill -9 costs per task
    "sequential_plait_nojournal": textwrap.dedent(
        """
        import sys, time
        import plait._recorder
        plait._recorder._open_journal = lambda *args: None
        from plait import flow, task
        N = int(sys.argv[1])

        @task
        def noop(i):
            return i

        @flow
        def seq():
            for i in range(N):
                noop(i)

        seq()
        t = time.perf_counter(); seq(); print(time.perf_counter() - t)
        """
    ),
    "sequential_baseline": textwrap.dedent(
        """
        import sys, time
        N = int(sys.argv[1])
        def noop(i):
            return i
        def seq():
            for i in range(N):
                noop(i)
        t = time.perf_counter(); seq(); print(time.perf_counter() - t)
        """
    ),
    "map_plait": textwrap.dedent(
        """
        import sys, time
        from plait import flow, task
        N = int(sys.argv[1])

        @task
        def inc(i):
            return i + 1

        @flow
        def fan_out(n):
            return sum(inc.map(range(n)).result())

        fan_out(10)  # warm-up
        t = time.perf_counter(); assert fan_out(N) == N * (N + 1) // 2; print(time.perf_counter() - t)
        """
    ),
    "map_baseline": textwrap.dedent(
        """
        import sys, time
        N = int(sys.argv[1])
        def inc(i):
            return i + 1
        t = time.perf_counter(); assert sum([inc(i) for i in range(N)]) == N * (N + 1) // 2
        print(time.perf_counter() - t)
        """
    ),
    "script_plait": textwrap.dedent(
        """
        from plait import flow, task

        @task
        def hello(name):
            return f"hello {name}"

        @flow
        def greet():
            return hello("world")

        greet()
        """
    ),
    "script_baseline": "def hello(name):\n    return f'hello {name}'\nhello('world')\n",
}


def run_case(name: str, *args: str, home: str, api_url: str | None = None) -> tuple[float, float, float]:
    """Run a case in a fresh process: (figure printed, wall seconds, peak RSS MiB); with
    ``api_url``, the case records to that plait server instead of its own SQLite file."""
    env = {**os.environ, "PLAIT_HOME": home, "PLAIT_LOG_TO_CONSOLE": "false"}
    env.pop("PLAIT_DATABASE_URL", None)
    env.pop("PLAIT_API_URL", None)
    env.pop("PLAIT_API_KEY", None)
    if api_url:
        env["PLAIT_API_URL"] = api_url
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(CASES[name])
    wrapper = (
        "import resource, runpy, sys, json\n"
        f"sys.argv = [{handle.name!r}, *{list(args)!r}]\n"
        f"runpy.run_path({handle.name!r}, run_name='__main__')\n"
        "sys.stderr.write('\\nRSS=' + str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))\n"
    )
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    os.unlink(handle.name)
    if done.returncode != 0:
        raise SystemExit(f"benchmark case {name} failed:\n{done.stderr}")
    out = done.stdout.strip().splitlines()
    figure = float(out[-1]) if out else wall
    rss_kib = int(done.stderr.rsplit("RSS=", 1)[1])
    return figure, wall, rss_kib / 1024


def cases(name: str, *args: str, repeat: int, api_url: str | None = None) -> list[tuple[float, float, float]]:
    """``repeat`` runs of one case, each in a fresh PLAIT_HOME."""
    results = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="plait-bench-") as home:
            results.append(run_case(name, *args, home=home, api_url=api_url))
    return results


def median_case(name: str, *args: str, repeat: int, api_url: str | None = None) -> tuple[float, float, float]:
    results = cases(name, *args, repeat=repeat, api_url=api_url)
    return (
        statistics.median(r[0] for r in results),
        statistics.median(r[1] for r in results),
        max(r[2] for r in results),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and no 100k map")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    opts = parser.parse_args()
    repeat = 3 if opts.quick else 5
    rows = []

    def row(what, plait_value, base_value, unit, target, ok):
        ratio = plait_value / base_value if base_value else float("inf")
        rows.append({"what": what, "plait": plait_value, "baseline": base_value, "unit": unit,
                     "ratio": ratio, "target": target, "met": ok})

    imp, _, _ = median_case("import_plait", repeat=repeat * 2)
    base, _, _ = median_case("import_baseline", repeat=repeat * 2)
    row("import plait", imp * 1e3, base * 1e3, "ms", "<= 150 ms", imp <= 0.150)

    n = 5000
    seq, _, _ = median_case("sequential_plait", str(n), repeat=repeat)
    seq_base, _, _ = median_case("sequential_baseline", str(n), repeat=repeat)
    per_task = (seq - seq_base) / n * 1e6
    row(f"sequential task overhead ({n} tasks, history on)", per_task, seq_base / n * 1e6, "µs/task",
        "<= 50 µs", per_task <= 50)

    # what the journal costs: on vs off, each the median of `repeat` runs; "measurable" means
    # more than the spread of the journalled runs themselves
    runs_on = [r[0] for r in cases("sequential_plait", str(n), repeat=repeat)]
    runs_off = [r[0] for r in cases("sequential_plait_nojournal", str(n), repeat=repeat)]
    journal_cost = (statistics.median(runs_on) - statistics.median(runs_off)) / n * 1e6
    noise = (max(runs_on) - min(runs_on)) / n * 1e6
    row(f"journal cost per task ({n} tasks; spread {noise:.1f} µs)", journal_cost, per_task, "µs/task",
        "<= spread of runs", journal_cost <= noise)

    # the same tasks recording to a plait server on this machine (its own SQLite store)
    from plait.testing import running_server

    with tempfile.TemporaryDirectory(prefix="plait-bench-server-") as server_home:
        with running_server(f"sqlite:///{server_home}/plait.db", Path(server_home), auth=False) as server:
            remote, _, _ = median_case("sequential_plait", str(n), repeat=repeat, api_url=server.api_url)
    remote_per_task = (remote - seq_base) / n * 1e6
    row(f"sequential task overhead ({n} tasks, recorded to a local plait server)", remote_per_task, per_task,
        "µs/task", "<= 2x the local figure", remote_per_task <= 2 * per_task)

    for size, target_s, target_mb in ((10_000, 1.0, None), (100_000, 10.0, 600.0)):
        if opts.quick and size > 10_000:
            continue
        wall, _, rss = median_case("map_plait", str(size), repeat=max(1, repeat - 2))
        base_wall, _, base_rss = median_case("map_baseline", str(size), repeat=max(1, repeat - 2))
        row(f".map over {size:,} items (wall)", wall, base_wall, "s", f"<= {target_s:g} s", wall <= target_s)
        ok = target_mb is None or rss <= target_mb
        row(f".map over {size:,} items (peak RSS)", rss, base_rss, "MiB",
            f"<= {target_mb:g} MiB" if target_mb else "-", ok)

    _, script_wall, _ = median_case("script_plait", repeat=repeat)
    _, base_script, _ = median_case("script_baseline", repeat=repeat)
    row("whole script: one flow, one task (process wall)", script_wall * 1e3, base_script * 1e3, "ms", "-", True)

    if opts.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'case':<52} {'plait':>10} {'baseline':>10} {'unit':<8} {'ratio':>8}  target")
    for r in rows:
        mark = "ok " if r["met"] else "MISS"
        print(f"{r['what']:<52} {r['plait']:>10.2f} {r['baseline']:>10.2f} {r['unit']:<8} "
              f"{r['ratio']:>7.1f}x  {r['target']} {mark}")


if __name__ == "__main__":
    main()
