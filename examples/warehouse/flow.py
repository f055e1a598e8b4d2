"""The main job: the flow a data engineer writes with plait and its collections.

    extract orders -> land the raw file in storage -> load it into the warehouse
    -> dbt build (one task run per dbt node) -> a notification announces the outcome

On embedded defaults everything is local: landing files under $PLAIT_HOME/landing, a DuckDB
warehouse file, and a webhook receiver this script starts on 127.0.0.1 to show the
announcement. Saved blocks replace each default (see blocks.example.toml and the README):

    landing   any storage block, e.g. s3-bucket          (plait-aws),
              azure-blob-storage-container (plait-azure) or gcs-bucket (plait-gcp)
    warehouse a sqlalchemy-connector, e.g. PostgreSQL    (plait-sqlalchemy)
              or a snowflake-connector                   (plait-snowflake; dbt needs dbt-snowflake)
    announce  any notification block, e.g. slack-webhook (built in)

    python examples/warehouse/flow.py [--day 2026-11-20] [--orders 400]
"""

from __future__ import annotations

import argparse
import csv
import http.server
import io
import json
import os
import random
import subprocess
import sys
import threading
from datetime import date
from pathlib import Path
from typing import Any

from plait import flow, get_run_logger, task
from plait.blocks import load_document
from plait.exceptions import BlockNotFound
from plait.settings import get_settings
from plait_blocks import LocalFileSystem, Webhook, wait_for_deliveries
from plait_dbt import DbtCliProfile, DuckDbTargetConfigs, PostgresTargetConfigs, SnowflakeTargetConfigs, dbt_run
from plait_sqlalchemy import DatabaseCredentials, SqlAlchemyConnector, execute, execute_many, query

DBT_PROJECT = Path(__file__).resolve().parent / "dbt"
COUNTRIES = ["DE", "FR", "NL", "ES"]


# -- tasks -----------------------------------------------------------------------------------
@task(retries=2, retry_delay_seconds=[0.2, 1.0])
def extract_orders(day: str, count: int) -> list[dict[str, Any]]:
    """Generate the day's orders (a stand-in for an API or an operational database)."""
    rng = random.Random(day)
    return [
        {
            "order_id": f"{day}-{i:05d}",
            "order_day": day,
            "customer_id": f"c{rng.randint(1, max(1, count // 4)):04d}",
            "country": rng.choice(COUNTRIES),
            "amount": round(rng.uniform(4, 250), 2),
        }
        for i in range(count)
    ]


@task
def land_raw_file(rows: list[dict[str, Any]], day: str, landing: Any) -> str:
    """Write the raw extract as CSV into the landing storage; return its path there."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    path = f"orders/{day}.csv"
    landing.write_path(path, buffer.getvalue().encode())
    get_run_logger().info("landed %d orders at %s/%s", len(rows), landing.uri, path)
    return path


@task
def read_landed(path: str, landing: Any) -> list[dict[str, Any]]:
    """Read the landed CSV back from storage, typed for loading."""
    rows = list(csv.DictReader(io.StringIO(landing.read_path(path).decode())))
    return [{**row, "amount": float(row["amount"])} for row in rows]


CREATE_RAW_ORDERS = (
    "create table if not exists raw.orders (order_id varchar primary key, order_day varchar,"
    " customer_id varchar, country varchar, amount double precision)"
)
INSERT_RAW_ORDER = "insert into raw.orders values (:order_id, :order_day, :customer_id, :country, :amount)"


# -- loading: one small loader per kind of warehouse block ------------------------------------
# Each loads the day's records with its collection's prebuilt tasks and returns the day's count;
# re-running a day replaces it (idempotent load).
def load_with_sqlalchemy(records: list[dict[str, Any]], day: str, warehouse: Any) -> int:
    with warehouse:
        execute("create schema if not exists raw", warehouse)
        execute(CREATE_RAW_ORDERS, warehouse)
        execute("delete from raw.orders where order_day = :day", warehouse, {"day": day})
        execute_many.with_options(retries=1)(INSERT_RAW_ORDER, warehouse, records)
        return query("select count(*) as n from raw.orders where order_day = :day", warehouse, {"day": day})[0]["n"]


def load_with_snowflake(records: list[dict[str, Any]], day: str, warehouse: Any) -> int:
    from plait_snowflake import snowflake_load_rows, snowflake_multi_query, snowflake_query

    with warehouse:
        snowflake_multi_query(["create schema if not exists raw", CREATE_RAW_ORDERS,
                               ("delete from raw.orders where order_day = ?", [day])], warehouse)
        snowflake_load_rows.with_options(retries=1)("raw.orders", records, warehouse)
        return snowflake_query("select count(*) as n from raw.orders where order_day = ?", warehouse, [day])[0]["N"]


LOADERS = {"sqlalchemy-connector": load_with_sqlalchemy, "snowflake-connector": load_with_snowflake}


# -- the flow ----------------------------------------------------------------------------------
@flow(name="warehouse-daily", log_prints=True)
def warehouse_daily(day: str, orders: int = 400) -> dict[str, Any]:
    landing, warehouse, profile = configured_targets()
    rows = extract_orders(day, orders)
    path = land_raw_file(rows, day, landing)
    records = read_landed(path, landing)
    loaded = LOADERS[warehouse.block_type_slug](records, day, warehouse)
    print(f"loaded {loaded} orders for {day} into raw.orders")
    result = dbt_run("build", project_dir=DBT_PROJECT, profile=profile)  # plait-dbt: a task run per node
    counts = result.counts()
    print(f"dbt build: {sorted(counts.items())}")
    return {"day": day, "loaded": loaded, "dbt": counts}


def configured_targets() -> tuple[Any, Any, DbtCliProfile]:
    """Saved blocks when present (blocks.example.toml), embedded defaults otherwise."""
    home = get_settings().home
    landing = saved("landing") or LocalFileSystem(basepath=str(home / "landing"))
    warehouse = saved("warehouse")
    if warehouse is None:
        duckdb_file = str(home / "warehouse.duckdb")
        warehouse = SqlAlchemyConnector(credentials=DatabaseCredentials(driver="duckdb", database=duckdb_file))
        target = DuckDbTargetConfigs(path=duckdb_file, schema_name="analytics")
    elif warehouse.block_type_slug == "snowflake-connector":  # dbt builds into the connector's schema
        target = SnowflakeTargetConfigs(connector=warehouse)
    else:
        target = PostgresTargetConfigs(credentials=warehouse.credentials, schema_name="analytics")
    return landing, warehouse, DbtCliProfile(name="shop_warehouse", target_configs=target)


def saved(name: str) -> Any:
    try:
        return load_document(name)
    except BlockNotFound:
        return None


# -- the announcement ----------------------------------------------------------------------------
class _Receiver(http.server.BaseHTTPRequestHandler):
    """Stands in for a chat or incident tool: prints what the webhook block delivers."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        print(f"\n[announcement received] {body.get('subject')}\n{body.get('body')}\n")
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def announce_outcomes() -> None:
    """Make sure a notification rule announces this flow's final states."""
    from plait.notifications import create_rule, list_rules

    announce = saved("announce")
    if announce is None:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        Webhook(url=f"http://127.0.0.1:{server.server_address[1]}/announce").save("announce", overwrite=True)
    if not any(rule["name"] == "announce-warehouse-daily" for rule in list_rules()):
        create_rule(block=saved("announce").block_type_slug + "/announce", flow_name="warehouse-daily",
                    states=["COMPLETED", "FAILED", "CRASHED"], name="announce-warehouse-daily")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--day", default=date(2026, 11, 20).isoformat())
    parser.add_argument("--orders", type=int, default=400)
    args = parser.parse_args()
    announce_outcomes()
    state = warehouse_daily(args.day, args.orders, return_state=True)
    wait_for_deliveries(timeout=10)
    flow_run_id = state_flow_run_id(state)
    print(f"warehouse-daily finished {state.type.value}: {state.result(raise_on_failure=False)}")
    # show the recorded run: task runs for every step and every dbt node, with their edges
    subprocess.run([sys.executable, "-m", "plait.cli", "flow-run", "inspect", flow_run_id], check=False)
    print(f"\nSee it again, from any directory:\n  {again_command(flow_run_id)}")
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is recorded and delivered by now. Leave without interpreter teardown:
    # duckdb 2.0's bindings print a page of "leaked instance" noise at shutdown otherwise.
    os._exit(0 if state.is_completed() else 1)


def again_command(flow_run_id: str) -> str:
    """The shell command that shows this run again, as printed: this PLAIT_HOME (absolute)
    and the plait of this interpreter, whatever the PATH and the current directory."""
    import shlex

    home = str(Path(get_settings().home).expanduser().resolve())
    plait = Path(sys.executable).with_name("plait")
    program = shlex.quote(str(plait)) if plait.is_file() else f"{shlex.quote(sys.executable)} -m plait.cli"
    return f"PLAIT_HOME={shlex.quote(home)} {program} flow-run inspect {flow_run_id}"


def state_flow_run_id(state: Any) -> str:
    from plait.cli.commands import flow_run_ls

    return flow_run_ls(flow_name="warehouse-daily", limit=1)[0]["id"]


if __name__ == "__main__":
    main()
