"""The plait demo: retries, caching, map and a failure, recorded in run history.

    make demo        # sets up .venv, runs this file, then `plait flow-run ls`

Run it twice: the second run serves `enrich` from the cache (state Cached) instead of
running it again — across processes, because cache entries live in result storage.
"""

from __future__ import annotations

import random

from plait import flow, get_run_logger, task, unmapped
from plait.cache_policies import INPUTS, TASK_SOURCE

_attempts: dict[str, int] = {}


@task(retries=3, retry_delay_seconds=[0.1, 0.2, 0.4], retry_jitter_factor=0.2)
def fetch_orders(day: str) -> list[dict]:
    """A flaky source: the first attempt of each day times out."""
    _attempts[day] = _attempts.get(day, 0) + 1
    if _attempts[day] == 1:
        raise ConnectionError(f"orders API timed out for {day}")
    rng = random.Random(day)
    countries = ["DE", "FR", "NL", "DE", "XX", "FR", "NL", "DE"]  # one order with an unknown country
    return [{"id": f"{day}-{i}", "amount": round(rng.uniform(5, 120), 2), "country": country}
            for i, country in enumerate(countries)]


@task(cache_policy=INPUTS + TASK_SOURCE)
def exchange_rates(currency: str) -> dict[str, float]:
    """Expensive lookup worth caching: runs once, later calls (even in new processes) are Cached."""
    get_run_logger().info("computing %s rates (this line appears only when not cached)", currency)
    return {"DE": 1.0, "FR": 1.0, "NL": 1.0, "XX": 1.0}


@task
def convert(order: dict, rates: dict[str, float]) -> dict:
    if order["country"] not in rates:
        raise KeyError(f"no rate for country {order['country']!r}")
    return {**order, "amount_eur": round(order["amount"] * rates[order["country"]], 2)}


@task
def validate(orders: list[dict]) -> int:
    unknown = [o["id"] for o in orders if o["country"] == "XX"]
    if unknown:
        raise ValueError(f"{len(unknown)} orders with unknown country: {', '.join(unknown[:3])}…")
    return len(orders)


@task(log_prints=True)
def report(converted: list[dict]) -> float:
    total = round(sum(o["amount_eur"] for o in converted), 2)
    print(f"{len(converted)} orders, total EUR {total}")
    return total


@flow(log_prints=True)
def daily_orders(day: str = "2026-11-20") -> float:
    orders = fetch_orders(day)  # fails once, retried
    rates = exchange_rates("EUR")  # cached after the first run
    check = validate(orders, return_state=True)  # a failure we handle: the flow carries on
    if check.is_failed():
        print(f"validation failed, continuing with known countries: {check.message}")
        orders = [o for o in orders if o["country"] != "XX"]
    converted = convert.map(orders, unmapped(rates))  # fan out, one task run per order
    return report(converted)


@flow
def strict_orders(day: str = "2026-11-20") -> int:
    """The same data, but a validation failure is not handled: this flow run ends Failed."""
    return validate(fetch_orders(day))


if __name__ == "__main__":
    total = daily_orders()
    print(f"daily_orders returned {total}")
    try:
        strict_orders()
    except ValueError as exc:
        print(f"strict_orders failed as expected: {exc}")
