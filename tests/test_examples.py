"""The README's main job and the basics demo run from a clean home and record what they claim."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env["PLAIT_HOME"] = str(home)
    return subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=600)


def _history(home: Path):
    from plait.testing import plait_test_harness

    with plait_test_harness(database_url=f"sqlite:///{home / 'plait.db'}") as harness:
        return [(run, harness.flow_run(run["id"])) for run in harness.flow_runs(limit=20)]


@pytest.mark.slow
def test_demo_server_runs_the_main_job_against_a_server(tmp_path):
    """`make demo-server`: a server process, the job recording to it from a second process,
    the runs listed through the API; the job's own home holds no run database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env["DEMO_HOME"] = str(tmp_path / "demo")
    env["COLUMNS"] = "120"  # tables fit the width: that of a usual terminal, not 80
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "server_demo.py"), "--orders", "40"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[announcement received] plait: flow 'warehouse-daily'" in done.stdout
    listed = done.stdout.rsplit("plait flow-run ls --state completed --limit 10", 1)[1]
    assert "warehouse-daily" in listed and "Completed" in listed
    # the deployment on a 5 s interval schedule, run by a worker for about 12 s
    assert "freshness-check" in listed
    assert re.search(r"worker '[^']+' of pool 'demo' stopped: [1-9]\d* Completed", done.stdout), done.stdout[-2000:]
    assert "Where to look:" in done.stdout
    assert not (tmp_path / "demo" / "worker" / "plait.db").exists()  # everything went to the server
    from plait.testing import plait_test_harness

    with plait_test_harness(database_url=f"sqlite:///{tmp_path / 'demo' / 'server' / 'plait.db'}") as harness:
        runs = {r["flow_name"]: r for r in harness.flow_runs(limit=500) if r["state_type"] == "COMPLETED"}
        checks = harness.flow_runs(flow_name="freshness-check", limit=500)
        reports = [harness.flow_run(r["id"]) for r in harness.flow_runs(flow_name="freshness-report", limit=500)
                   if r["state_type"] == "COMPLETED"]
    assert runs["warehouse-daily"]["state_type"] == "COMPLETED"
    # a deployment trigger: each completed check starts a report, which the worker runs
    assert reports and reports[0]["parameters"] == {"tables": 3}
    assert any(r["state_type"] == "COMPLETED" for r in checks)
    assert not [r for r in checks if r["state_type"] in ("FAILED", "CRASHED")]
    assert runs["warehouse-daily"]["task_run_count"] > 10


def test_main_job_extract_land_load_dbt_announce(tmp_path):
    home = tmp_path / "home"
    done = _run(ROOT / "examples" / "warehouse" / "flow.py", home, "--orders", "120")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[announcement received] plait: flow 'warehouse-daily'" in done.stdout
    assert "is Completed" in done.stdout
    assert (home / "landing" / "orders" / "2026-11-20.csv").is_file()
    [(run, detail)] = [(r, d) for r, d in _history(home) if r["flow_name"] == "warehouse-daily"]
    assert run["state_type"] == "COMPLETED"
    names = {t["task_name"]: t for t in detail["task_runs"]}
    for step in ("extract_orders", "land_raw_file", "read_landed", "sqlalchemy_execute",
                 "sqlalchemy_execute_many", "sqlalchemy_query", "dbt_run"):
        assert names[step]["state_type"] == "COMPLETED", step
    assert "loaded 120 orders for 2026-11-20 into raw.orders" in done.stderr  # print() became a run log line
    # dbt nodes: short names, dbt's unique id kept as a parameter
    models = {t["parameters"]["unique_id"] for t in detail["task_runs"]
              if t["parameters"].get("resource_type") == "model"}
    assert models == {"model.shop_warehouse.stg_orders", "model.shop_warehouse.daily_revenue",
                      "model.shop_warehouse.customer_totals"}
    assert names["daily_revenue"]["parameters"]["unique_id"] == "model.shop_warehouse.daily_revenue"
    upstream = {u["task_name"] for u in names["daily_revenue"]["upstream"]}
    assert "stg_orders" in upstream  # lineage from dbt's manifest
    # the recorded run was shown at the end, with its task runs
    assert "daily_revenue" in done.stdout
    # and the closing hint is a command that works as printed, from another directory
    command = done.stdout.split("See it again, from any directory:\n", 1)[1].splitlines()[0].strip()
    assert f"PLAIT_HOME={home}" in command and run["id"] in command
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    again = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "daily_revenue" in again.stdout and run["id"][:8] in again.stdout


def test_basics_demo_shows_retries_caching_map_and_a_failure(tmp_path):
    home = tmp_path / "home"
    for _ in range(2):
        done = _run(ROOT / "examples" / "demo.py", home)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "strict_orders failed as expected" in done.stdout
    history = _history(home)
    states = sorted((run["flow_name"], run["state_type"]) for run, _ in history)
    assert states == [("daily-orders", "COMPLETED")] * 2 + [("strict-orders", "FAILED")] * 2
    daily = [detail for run, detail in history if run["flow_name"] == "daily-orders"]
    newest, oldest = daily[0], daily[1]
    rates = lambda detail: next(t for t in detail["task_runs"] if t["task_name"] == "exchange_rates")  # noqa: E731
    assert rates(oldest)["state_type"] == "COMPLETED" and rates(newest)["state_type"] == "CACHED"
    fetch = next(t for t in oldest["task_runs"] if t["task_name"] == "fetch_orders")
    assert fetch["retries"] == 1
    assert sum(t["task_name"] == "convert" for t in oldest["task_runs"]) == 7
    assert any(t["task_name"] == "validate" and t["state_type"] == "FAILED" for t in oldest["task_runs"])


def test_example_blocks_file_resolves_and_validates(monkeypatch, plait_harness):
    from plait.blocks import apply_blocks_file

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "LANDING_BUCKET", "WAREHOUSE_HOST",
                 "WAREHOUSE_DB", "WAREHOUSE_USER", "WAREHOUSE_PASSWORD", "SLACK_WEBHOOK_URL"):
        monkeypatch.setenv(name, "https://hooks.example.com/x" if name == "SLACK_WEBHOOK_URL" else f"v-{name.lower()}")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    results = apply_blocks_file(ROOT / "examples" / "warehouse" / "blocks.example.toml", dry_run=True)
    assert {(r.slug, r.name, r.action) for r in results} == {
        ("aws-credentials", "warehouse-aws", "created"), ("s3-bucket", "landing", "created"),
        ("database-credentials", "warehouse-postgres", "created"), ("sqlalchemy-connector", "warehouse", "created"),
        ("slack-webhook", "announce", "created"),
    }


def _commented_alternative(text: str, heading: str) -> str:
    """The commented-out blocks under ``heading`` in the example blocks file, uncommented."""
    lines = text.split(heading, 1)[1].splitlines()[1:]
    block = []
    for line in lines:
        if not line.startswith("#"):
            break
        block.append(line[2:] if line.startswith("# ") else line[1:])
    return "\n".join(block) + "\n"


@pytest.mark.parametrize(("heading", "slugs", "env"), [
    ("# Or land them in Azure Blob Storage", {"azure-blob-credentials", "azure-blob-storage-container"},
     {"AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k;",
      "LANDING_CONTAINER": "raw-files"}),
    ("# Or in Google Cloud Storage", {"gcp-credentials", "gcs-bucket"},
     {"GCP_SERVICE_ACCOUNT_JSON": '{"type": "service_account", "client_email": "etl@analytics.iam.gserviceaccount.com", '
      '"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\\n", '
      '"token_uri": "https://oauth2.googleapis.com/token"}', "GCP_PROJECT": "analytics",
      "LANDING_BUCKET": "raw-files"}),
])
def test_the_commented_landing_options_validate(monkeypatch, plait_harness, tmp_path, heading, slugs, env):
    """The Azure and GCS landings in blocks.example.toml are real blocks files once uncommented."""
    from plait.blocks import apply_blocks_file

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    text = (ROOT / "examples" / "warehouse" / "blocks.example.toml").read_text()
    path = tmp_path / "landing.toml"
    path.write_text(_commented_alternative(text, heading))
    results = apply_blocks_file(path, dry_run=True)
    assert {r.slug for r in results} == slugs
    assert ("landing" in {r.name for r in results})


@pytest.mark.parametrize("script", ["demo.py", "warehouse/flow.py"])
def test_examples_import_only_public_api(script):
    text = (ROOT / "examples" / script).read_text()
    assert "plait._" not in text


@pytest.mark.postgres
def test_main_job_on_a_postgres_warehouse_configured_by_blocks(tmp_path):
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from plait.testing import throwaway_postgres_database

    home = tmp_path / "home"
    with throwaway_postgres_database("plait_main_job") as url:
        database = make_url(url).database
        blocks = tmp_path / "blocks.toml"
        blocks.write_text(
            '[[blocks]]\ntype = "database-credentials"\nname = "warehouse-postgres"\n[blocks.values]\n'
            'driver = "postgresql+psycopg"\nhost = "127.0.0.1"\nport = 5432\n'
            f'database = "{database}"\nusername = "postgres"\npassword = "${{env:WAREHOUSE_PASSWORD}}"\n\n'
            '[[blocks]]\ntype = "sqlalchemy-connector"\nname = "warehouse"\n[blocks.values]\n'
            'credentials = { "$block" = "database-credentials/warehouse-postgres" }\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
        env.update(PLAIT_HOME=str(home), WAREHOUSE_PASSWORD="pw-canary-7781")  # trust auth ignores it
        applied = subprocess.run([sys.executable, "-m", "plait.cli", "block", "apply", str(blocks)],
                                 env=env, capture_output=True, text=True, timeout=120)
        assert applied.returncode == 0, applied.stderr
        done = _run(ROOT / "examples" / "warehouse" / "flow.py", home, "--orders", "50")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "pw-canary-7781" not in done.stdout + done.stderr
        engine = create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(text("select count(*) from raw.orders")).scalar() == 50
            assert conn.execute(text("select sum(orders) from analytics.daily_revenue")).scalar() == 50
        engine.dispose()
    assert not (home / "warehouse.duckdb").exists()  # the DuckDB default was not used


def _dbt_snowflake_missing() -> str:
    import importlib.util

    for module, package in (("dbt.adapters.snowflake", "dbt-snowflake"), ("fakesnow", "fakesnow"),
                            ("plait_snowflake", "plait-snowflake")):
        try:
            if importlib.util.find_spec(module) is None:
                return package
        except ImportError:
            return package
    return ""


@pytest.mark.skipif(bool(_dbt_snowflake_missing()),
                    reason=f"{_dbt_snowflake_missing()} is not importable: pip install 'dbt-snowflake>=1.10,<1.12' "
                    "fakesnow (in plait-dbt's and plait-snowflake's test extras)")
def test_main_job_on_a_snowflake_warehouse_configured_by_blocks(tmp_path):
    """fakesnow serves Snowflake's HTTP API: plait-snowflake's tasks load, dbt-snowflake builds."""
    import socket
    import time

    import snowflake.connector

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "fakesnow", "-s", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "fakesnow did not start"
                time.sleep(0.2)
        home = tmp_path / "home"
        blocks = tmp_path / "blocks.toml"
        blocks.write_text(
            '[[blocks]]\ntype = "snowflake-credentials"\nname = "warehouse-snowflake"\n[blocks.values]\n'
            'account = "fakesnow"\nuser = "etl"\npassword = "${env:SNOWFLAKE_PASSWORD}"\n'
            f'host = "127.0.0.1"\nport = {port}\nprotocol = "http"\n\n'
            '[[blocks]]\ntype = "snowflake-connector"\nname = "warehouse"\n[blocks.values]\n'
            'credentials = { "$block" = "snowflake-credentials/warehouse-snowflake" }\n'
            'warehouse = "TRANSFORMING"\ndatabase = "SHOP"\nschema_name = "ANALYTICS"\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
        env.update(PLAIT_HOME=str(home), SNOWFLAKE_PASSWORD="pw-canary-5519")  # fakesnow accepts any login
        applied = subprocess.run([sys.executable, "-m", "plait.cli", "block", "apply", str(blocks)],
                                 env=env, capture_output=True, text=True, timeout=120)
        assert applied.returncode == 0, applied.stderr
        for _ in range(2):  # a second run of the same day replaces its rows
            done = _run(ROOT / "examples" / "warehouse" / "flow.py", home, "--orders", "50")
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            assert "pw-canary-5519" not in done.stdout + done.stderr
        assert "loaded 50 orders for 2026-11-20 into raw.orders" in done.stderr
        run, detail = next((r, d) for r, d in _history(home) if r["flow_name"] == "warehouse-daily")
        assert run["state_type"] == "COMPLETED"
        names = {t["task_name"]: t for t in detail["task_runs"]}
        for step in ("snowflake_multi_query", "snowflake_load_rows", "snowflake_query", "dbt_run",
                     "stg_orders", "daily_revenue", "customer_totals"):
            assert names[step]["state_type"] == "COMPLETED", step
        assert not any(name.startswith("sqlalchemy_") for name in names)
        conn = snowflake.connector.connect(account="fakesnow", user="etl", password="x", host="127.0.0.1",
                                           port=port, protocol="http", database="SHOP", schema="ANALYTICS")
        try:
            cursor = conn.cursor()
            assert cursor.execute("select count(*) from raw.orders").fetchone()[0] == 50
            assert cursor.execute("select sum(orders) from analytics.daily_revenue").fetchone()[0] == 50
            assert cursor.execute("select count(*) from analytics.stg_orders").fetchone()[0] == 50
            assert cursor.execute("select count(*) from analytics.customer_totals").fetchone()[0] > 0
        finally:
            conn.close()
        assert not (home / "warehouse.duckdb").exists()  # the DuckDB default was not used
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_main_job_lands_raw_files_in_an_s3_bucket_configured_by_blocks(tmp_path):
    """moto serves S3: the saved s3-bucket block named "landing" replaces the local landing dir."""
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        key_id, secret = "AKIDLANDINGTEST", "aws-secret-canary-4417"
        s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint,
                          aws_access_key_id=key_id, aws_secret_access_key=secret)
        s3.create_bucket(Bucket="shop-landing")
        home = tmp_path / "home"
        blocks = tmp_path / "blocks.toml"
        blocks.write_text(
            '[[blocks]]\ntype = "aws-credentials"\nname = "landing-aws"\n[blocks.values]\n'
            'aws_access_key_id = "${env:AWS_ACCESS_KEY_ID}"\n'
            'aws_secret_access_key = "${env:AWS_SECRET_ACCESS_KEY}"\n'
            f'region_name = "us-east-1"\nendpoint_url = "{endpoint}"\n\n'
            '[[blocks]]\ntype = "s3-bucket"\nname = "landing"\n[blocks.values]\n'
            'bucket_name = "shop-landing"\nbucket_folder = "raw"\n'
            'credentials = { "$block" = "aws-credentials/landing-aws" }\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PLAIT_", "AWS_"))}
        env.update(PLAIT_HOME=str(home), AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret,
                   AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
                   AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
                   AWS_EC2_METADATA_DISABLED="true")
        applied = subprocess.run([sys.executable, "-m", "plait.cli", "block", "apply", str(blocks)],
                                 env=env, capture_output=True, text=True, timeout=120)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        done = subprocess.run([sys.executable, str(ROOT / "examples" / "warehouse" / "flow.py"), "--orders", "30"],
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert secret not in done.stdout + done.stderr
        body = s3.get_object(Bucket="shop-landing", Key="raw/orders/2026-11-20.csv")["Body"].read().decode()
        assert len(body.splitlines()) == 31  # header + 30 orders
        run, detail = next((r, d) for r, d in _history(home) if r["flow_name"] == "warehouse-daily")
        assert run["state_type"] == "COMPLETED"
        names = {t["task_name"]: t for t in detail["task_runs"]}
        assert names["land_raw_file"]["state_type"] == "COMPLETED"
        assert not (home / "landing").exists()  # the local default was not used
    finally:
        server.stop()
