"""A small flow the server demo deploys on an interval schedule (run by a worker)."""

from __future__ import annotations

from plait import flow, get_run_logger, task


@task
def count_rows(table: str) -> int:
    rows = len(table) * 10  # stands in for a warehouse query
    get_run_logger().info("%s holds %d rows", table, rows)
    return rows


@flow(name="freshness-check")
def freshness_check(tables: list[str] | None = None) -> int:
    return sum(count_rows(t) for t in tables or ["orders", "customers"])


@flow(name="freshness-report")
def freshness_report(tables: int = 0) -> str:
    """Runs when a freshness check completes (a deployment trigger in plait.yaml)."""
    summary = f"{tables} table(s) checked"
    get_run_logger().info(summary)
    return summary
