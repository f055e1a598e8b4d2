"""Fill an empty plait store with a large synthetic run history, fast.

    python bench/store_gen.py --url sqlite:////tmp/big.db --flow-runs 1000000
    python bench/store_gen.py --url postgresql+psycopg://postgres@127.0.0.1/bench --flow-runs 1000000

N flow runs over a year (20 flows, 15% failed/crashed/cancelled, the newest 20 running, one
in ten a subflow of the run before it, tags on two in three, one in a thousand with 5 kB of
parameters) and, for each, --tasks-per-run task runs with their states (pending, running,
final), a chain of data edges and one log line each (plus two per flow run; one in ten
thousand 3 kB long). The rows are made by the database itself — a recursive CTE on SQLite,
generate_series on PostgreSQL — in large transactions, with the secondary indexes dropped
during the load and built afterwards (as the migrations define them). SQLite loads with
journal_mode=OFF and synchronous=OFF; PostgreSQL with synchronous_commit off, then VACUUM
ANALYZE. Ids look like uuids and are in no particular order, as real ones are.

Events are not generated (the list routes measured by bench/list_latency.py do not read
them). The database must hold no run history yet (--reset deletes what it holds).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))

from sqlalchemy import Table, text  # noqa: E402
from sqlalchemy.dialects import postgresql, sqlite  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.schema import CreateIndex  # noqa: E402

from plait._store.database import Database  # noqa: E402
from plait._store.models import (  # noqa: E402
    FLOW_RUN_TAGS,
    FLOW_RUNS,
    LOGS,
    STATES,
    TASK_RUN_EDGES,
    TASK_RUNS,
)

HISTORY: list[Table] = [FLOW_RUNS, FLOW_RUN_TAGS, TASK_RUNS, STATES, TASK_RUN_EDGES, LOGS]
START = datetime(2024, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=365)
FLOWS = 20
CHUNK = 200_000  # flow runs per statement group


# -- the rows, as SQL expressions of the row number -------------------------------------------------
# Each dialect supplies a few primitives; the column expressions below are shared.
class Dialect:
    name = ""

    def hex8(self, expr: str) -> str: raise NotImplementedError  # noqa: E704
    def hex12(self, expr: str) -> str: raise NotImplementedError  # noqa: E704
    def ts(self, micros: str) -> str: raise NotImplementedError  # noqa: E704
    def repeat(self, char: str, n: int) -> str: raise NotImplementedError  # noqa: E704
    def text(self, expr: str) -> str: raise NotImplementedError  # noqa: E704
    def json(self, expr: str) -> str: return expr  # noqa: E704
    def series(self, lo: int, hi: int, name: str) -> tuple[str, str]: raise NotImplementedError  # noqa: E704
    def div(self, a: str, b: str) -> str: return f"(({a}) / ({b}))"  # noqa: E704


class SQLiteDialect(Dialect):
    name = "sqlite"

    def hex8(self, expr: str) -> str:
        return f"printf('%08x', {expr})"

    def hex12(self, expr: str) -> str:
        return f"printf('%012x', {expr})"

    def ts(self, micros: str) -> str:
        # the text plait's SQLite column type stores: "YYYY-MM-DD HH:MM:SS.ffffff"
        return (f"(strftime('%Y-%m-%d %H:%M:%S', ({micros}) / 1000000, 'unixepoch') || '.' || "
                f"printf('%06d', ({micros}) % 1000000))")

    def repeat(self, char: str, n: int) -> str:
        return f"replace(hex(zeroblob({n // 2})), '0', '{char}')"

    def text(self, expr: str) -> str:
        return f"CAST({expr} AS TEXT)"

    def series(self, lo: int, hi: int, name: str) -> tuple[str, str]:
        cte = f"WITH RECURSIVE s({name}) AS (SELECT {lo} UNION ALL SELECT {name} + 1 FROM s WHERE {name} < {hi - 1}) "
        return cte, "s"


class PostgresDialect(Dialect):
    name = "postgresql"

    def hex8(self, expr: str) -> str:
        return f"lpad(to_hex({expr}), 8, '0')"

    def hex12(self, expr: str) -> str:
        return f"lpad(to_hex({expr}), 12, '0')"

    def ts(self, micros: str) -> str:
        return f"(timestamptz '1970-01-01 00:00:00+00' + ({micros}) * interval '1 microsecond')"

    def repeat(self, char: str, n: int) -> str:
        return f"repeat('{char}', {n})"

    def text(self, expr: str) -> str:
        return f"({expr})::text"

    def json(self, expr: str) -> str:
        return f"({expr})::json"

    def series(self, lo: int, hi: int, name: str) -> tuple[str, str]:
        return "", f"generate_series({lo}::bigint, {hi - 1}::bigint) AS s({name})"


def _micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


class Rows:
    """SQL for the synthetic history of ``n`` flow runs with ``tasks`` task runs each."""

    def __init__(self, d: Dialect, n: int, tasks: int) -> None:
        self.d, self.n, self.tasks = d, n, tasks
        self.start = _micros(START)
        self.step = max(_micros(START + SPAN) - self.start, n) // n  # microseconds between flow runs

    # ids: a multiplicative hash spreads them like random uuids, the tail keeps them unique
    def flow_id(self, i: str) -> str:
        return f"({self.d.hex8(f'(({i}) * 2654435761) % 4294967296')} || '-f10a-4000-8000-' || {self.d.hex12(i)})"

    def task_id(self, j: str) -> str:
        return f"({self.d.hex8(f'(({j}) * 2246822519) % 4294967296')} || '-7a5c-4000-9000-' || {self.d.hex12(j)})"

    def flow_created(self, i: str) -> str:
        return f"({self.start} + ({i}) * {self.step})"

    def flow_state(self, i: str) -> str:
        h = f"(((({i}) * 2246822519) % 4294967296) % 100)"  # independent of the flow name
        return (f"(CASE WHEN ({i}) >= {self.n - 20} THEN 'RUNNING' WHEN {h} < 85 THEN 'COMPLETED' "
                f"WHEN {h} < 93 THEN 'FAILED' WHEN {h} < 97 THEN 'CRASHED' ELSE 'CANCELLED' END)")

    def task_state(self, j: str) -> str:
        h = f"(((({j}) * 3266489917) % 4294967296) % 100)"
        return f"(CASE WHEN {h} < 96 THEN 'COMPLETED' WHEN {h} < 98 THEN 'FAILED' ELSE 'CACHED' END)"

    @staticmethod
    def title(state: str) -> str:
        return (f"(CASE {state} WHEN 'RUNNING' THEN 'Running' WHEN 'COMPLETED' THEN 'Completed' "
                f"WHEN 'FAILED' THEN 'Failed' WHEN 'CRASHED' THEN 'Crashed' WHEN 'CANCELLED' THEN 'Cancelled' "
                f"WHEN 'CACHED' THEN 'Cached' WHEN 'PENDING' THEN 'Pending' END)")

    def flow_insert(self, lo: int, hi: int) -> str:
        d, i = self.d, "i"
        cte, source = d.series(lo, hi, "i")
        created = self.flow_created(i)
        state = self.flow_state(i)
        ended = f"{created} + 1000000 + (({i}) % 300) * 1000000"
        big = d.repeat("x", 5000)
        parameters = (f"(CASE WHEN ({i}) % 1000 = 7 THEN '{{\"blob\": \"' || {big} || '\"}}' "
                      f"ELSE '{{\"day\": ' || {d.text(f'({i}) % 365')} || ', \"batch\": ' || {d.text(i)} || '}}' END)")
        tags = (f"(CASE WHEN ({i}) % 15 = 0 THEN '[\"prod\", \"nightly\"]' WHEN ({i}) % 3 = 0 THEN '[\"prod\"]' "
                f"WHEN ({i}) % 3 = 1 THEN '[\"nightly\"]' ELSE '[]' END)")
        return (
            f"{cte}INSERT INTO flow_runs (id, flow_name, name, parameters, tags, state_type, state_name, "
            "state_message, parent_flow_run_id, parent_task_run_id, run_count, created, start_time, end_time, pid, "
            "hostname, heartbeat_at, heartbeat_interval) SELECT "
            f"{self.flow_id(i)}, 'flow-' || {d.text(f'({i}) % {FLOWS}')}, 'run-' || {d.text(i)}, {d.json(parameters)}, "
            f"{d.json(tags)}, {state}, {self.title(state)}, "
            f"CASE WHEN {state} = 'FAILED' THEN 'ValueError: bad row ' || {d.text(i)} ELSE NULL END, "
            f"CASE WHEN ({i}) % 10 = 9 THEN {self.flow_id(f'({i}) - 1')} ELSE NULL END, NULL, 1, "
            f"{d.ts(created)}, {d.ts(f'{created} + 1000000')}, "
            f"CASE WHEN {state} = 'RUNNING' THEN NULL ELSE {d.ts(ended)} END, 1000 + ({i}) % 5000, "
            f"'bench-' || {d.text(f'({i}) % 8')}, {d.ts(ended)}, 5.0 FROM {source}"
        )

    def tag_insert(self, lo: int, hi: int, tag: str) -> str:
        """The flow_run_tags rows of the runs carrying ``tag`` (see the tags in flow_insert)."""
        cte, source = self.d.series(lo, hi, "i")
        which = "i % 3 = 0" if tag == "prod" else "(i % 3 = 1 OR i % 15 = 0)"
        return (f"{cte}INSERT INTO flow_run_tags (flow_run_id, tag, created) SELECT {self.flow_id('i')}, '{tag}', "
                f"{self.d.ts(self.flow_created('i'))} FROM {source} WHERE {which}")

    def task_parts(self, j: str) -> tuple[str, str, str]:
        i = self.d.div(j, str(self.tasks))
        k = f"(({j}) % {self.tasks})"
        return i, k, f"{self.flow_created(i)} + 1000000 + {k} * 100000"

    def task_insert(self, lo: int, hi: int) -> str:
        d, j = self.d, "j"
        cte, source = d.series(lo, hi, "j")
        i, k, created = self.task_parts(j)
        state = self.task_state(j)
        parameters = "'{\"k\": ' || " + d.text(k) + " || '}'"
        empty = "'[]'"
        return (
            f"{cte}INSERT INTO task_runs (id, flow_run_id, task_name, task_key, name, dynamic_key, parameters, "
            "tags, state_type, state_name, state_message, run_count, cache_key, result_ref, created, start_time, "
            f"end_time) SELECT {self.task_id(j)}, {self.flow_id(i)}, 'task-' || {d.text(k)}, "
            f"'bench.task_' || {d.text(k)}, 'task-' || {d.text(k)} || '-0', 0, "
            f"{d.json(parameters)}, {d.json(empty)}, {state}, {self.title(state)}, "
            f"CASE WHEN {state} = 'FAILED' THEN 'KeyError: ' || {d.text(j)} ELSE NULL END, 1, NULL, NULL, "
            f"{d.ts(created)}, {d.ts(f'{created} + 1000')}, {d.ts(f'{created} + 50000')} FROM {source}"
        )

    def state_insert(self, lo: int, hi: int, kind: str) -> str:
        """Three states per run: PENDING, RUNNING and the run's own (flow or task runs)."""
        d = self.d
        cte, source = d.series(lo, hi, "r")
        if kind == "flow":
            run_id, final, at = self.flow_id("r"), self.flow_state("r"), self.flow_created("r")
        else:
            _, _, at = self.task_parts("r")
            run_id, final = self.task_id("r"), self.task_state("r")
        state = f"(CASE p.n WHEN 0 THEN 'PENDING' WHEN 1 THEN 'RUNNING' ELSE {final} END)"
        phases = "(SELECT 0 AS n UNION ALL SELECT 1 UNION ALL SELECT 2) AS p"
        return (
            f"{cte}INSERT INTO states (run_id, run_kind, type, name, message, timestamp) SELECT "
            f"{run_id}, '{kind}', {state}, {self.title(state)}, NULL, {d.ts(f'{at} + p.n * 1000')} "
            f"FROM {source} CROSS JOIN {phases}"
        )

    def edge_insert(self, lo: int, hi: int) -> str:
        cte, source = self.d.series(lo, hi, "j")
        return (
            f"{cte}INSERT INTO task_run_edges (upstream_id, downstream_id, kind, parameter) SELECT "
            f"{self.task_id('j - 1')}, {self.task_id('j')}, 'data', 'rows' FROM {source} "
            f"WHERE j % {self.tasks} <> 0"
        )

    def log_insert(self, lo: int, hi: int, kind: str) -> str:
        d = self.d
        cte, source = d.series(lo, hi, "r")
        if kind == "flow":
            phases = "(SELECT 0 AS n UNION ALL SELECT 1) AS p"
            created = self.flow_created("r")
            return (
                f"{cte}INSERT INTO logs (flow_run_id, task_run_id, level, logger, message, timestamp) SELECT "
                f"{self.flow_id('r')}, NULL, 20, 'plait.runs', CASE p.n WHEN 0 THEN 'Beginning flow run ' || "
                f"{d.text('r')} ELSE 'Finished in state ' || {self.flow_state('r')} END, "
                f"{d.ts(f'{created} + 1000000 + p.n * 2000000')} FROM {source} CROSS JOIN {phases}"
            )
        i, _, at = self.task_parts("r")
        message = (f"CASE WHEN r % 10000 = 3 THEN {d.repeat('y', 3000)} "
                   f"ELSE 'Finished task run ' || {d.text('r')} END")
        return (
            f"{cte}INSERT INTO logs (flow_run_id, task_run_id, level, logger, message, timestamp) SELECT "
            f"{self.flow_id(i)}, {self.task_id('r')}, CASE WHEN r % 50 = 0 THEN 30 WHEN r % 97 = 0 THEN 40 "
            f"ELSE 20 END, 'plait.task', {message}, {d.ts(f'{at} + 40000')} FROM {source}"
        )


# -- loading ---------------------------------------------------------------------------------------
def _secondary_indexes(dialect: Any) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of every secondary index of the history tables."""
    out = []
    for table in HISTORY:
        for index in sorted(table.indexes, key=lambda ix: str(ix.name)):
            out.append((str(index.name), str(CreateIndex(index).compile(dialect=dialect))))
    return out


def _say(message: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:7.1f} s] {message}", flush=True)


def _plan(rows: Rows, opts: argparse.Namespace) -> list[tuple[str, list[str]]]:
    n, tasks = opts.flow_runs, opts.flow_runs * opts.tasks_per_run
    steps: list[tuple[str, list[str]]] = []

    def chunked(label: str, total: int, make: Any) -> None:
        size = CHUNK * (opts.tasks_per_run if total > n else 1)
        made = [make(lo, min(lo + size, total)) for lo in range(0, total, size)]
        steps.append((label, [s for m in made for s in (m if isinstance(m, list) else [m])]))

    chunked(f"{n:,} flow runs", n, rows.flow_insert)
    chunked("their tags", n, lambda lo, hi: [rows.tag_insert(lo, hi, "prod"), rows.tag_insert(lo, hi, "nightly")])
    if tasks:
        chunked(f"{tasks:,} task runs", tasks, rows.task_insert)
    if opts.states:
        chunked(f"{3 * n:,} flow run states", n, lambda lo, hi: rows.state_insert(lo, hi, "flow"))
        if tasks:
            chunked(f"{3 * tasks:,} task run states", tasks, lambda lo, hi: rows.state_insert(lo, hi, "task"))
    if opts.edges and tasks:
        chunked(f"{n * (opts.tasks_per_run - 1):,} edges", tasks, rows.edge_insert)
    if opts.logs:
        chunked(f"{2 * n:,} flow run log lines", n, lambda lo, hi: rows.log_insert(lo, hi, "flow"))
        if tasks:
            chunked(f"{tasks:,} task run log lines", tasks, lambda lo, hi: rows.log_insert(lo, hi, "task"))
    return steps


def _check_empty(db: Database, reset: bool) -> None:
    with db.engine.begin() as conn:
        held = conn.execute(text("SELECT count(*) FROM (SELECT 1 FROM flow_runs LIMIT 1) AS x")).scalar()
        if held and not reset:
            raise SystemExit(f"{db.url_masked} already holds run history; use an empty database or pass --reset")
        if held:
            for name in [t.name for t in HISTORY] + ["results", "events", "ingested_batches"]:
                conn.execute(text(f"DELETE FROM {name}"))


def load_sqlite(db: Database, opts: argparse.Namespace, started: float) -> None:
    import sqlite3

    path = make_url(opts.url).database
    db.dispose()
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -1000000", "temp_store = MEMORY",
                       "locking_mode = EXCLUSIVE"):
            conn.execute(f"PRAGMA {pragma}")
        indexes = _secondary_indexes(sqlite.dialect())
        for name, _ in indexes:
            conn.execute(f"DROP INDEX IF EXISTS {name}")
        for label, statements in _plan(Rows(SQLiteDialect(), opts.flow_runs, opts.tasks_per_run), opts):
            conn.execute("BEGIN")
            for statement in statements:
                conn.execute(statement)
            conn.execute("COMMIT")
            _say(label, started)
        for _, create in indexes:
            conn.execute(create)
        _say(f"{len(indexes)} indexes", started)
        conn.execute("PRAGMA journal_mode = WAL")  # as plait opens it
    finally:
        conn.close()


def load_postgres(db: Database, opts: argparse.Namespace, started: float) -> None:
    indexes = _secondary_indexes(postgresql.dialect())  # type: ignore[no-untyped-call]
    keyed = {"flow_runs": "id", "flow_run_tags": "flow_run_id, tag", "task_runs": "id"}
    with db.engine.connect() as conn:
        conn.exec_driver_sql("SET synchronous_commit = off")
        conn.exec_driver_sql("SET maintenance_work_mem = '1GB'")
        for name, _ in indexes:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
        for table in keyed:  # the primary keys too: built once at the end instead of row by row
            conn.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS pk_{table}")
        conn.commit()
        cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        for label, statements in _plan(Rows(PostgresDialect(), opts.flow_runs, opts.tasks_per_run), opts):
            for statement in statements:
                cursor.execute(statement)  # without parameters: "%" is the modulo operator here
            conn.commit()
            _say(label, started)
        for table, key in keyed.items():
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({key})")
            conn.commit()
        for _, create in indexes:
            conn.exec_driver_sql(create)
            conn.commit()
        _say(f"{len(indexes)} indexes and {len(keyed)} primary keys", started)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for history_table in HISTORY:
            conn.exec_driver_sql(f"VACUUM (ANALYZE) {history_table.name}")
    _say("vacuum analyze", started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("PLAIT_DATABASE_URL"),
                        help="the store to fill (default: PLAIT_DATABASE_URL)")
    parser.add_argument("--flow-runs", type=int, default=1_000_000, help="how many flow runs (default 1,000,000)")
    parser.add_argument("--tasks-per-run", type=int, default=10, help="task runs per flow run (default 10)")
    parser.add_argument("--no-states", dest="states", action="store_false", help="no state history rows")
    parser.add_argument("--no-edges", dest="edges", action="store_false", help="no task run edges")
    parser.add_argument("--no-logs", dest="logs", action="store_false", help="no log lines")
    parser.add_argument("--reset", action="store_true", help="delete the run history the store holds first")
    opts = parser.parse_args()
    if not opts.url:
        parser.error("give --url (or set PLAIT_DATABASE_URL)")
    if opts.flow_runs < 1 or opts.tasks_per_run < 0:
        parser.error("--flow-runs must be at least 1 and --tasks-per-run at least 0")
    started = time.perf_counter()
    db = Database(opts.url)  # creates or migrates the schema
    _check_empty(db, opts.reset)
    if db.dialect == "sqlite":
        load_sqlite(db, opts, started)
    elif db.dialect == "postgresql":
        load_postgres(db, opts, started)
    else:
        raise SystemExit(f"store_gen fills SQLite and PostgreSQL stores, not {db.dialect}")
    db.dispose()
    _say(f"done: {db.url_masked}", started)


if __name__ == "__main__":
    main()
