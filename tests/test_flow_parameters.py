"""A flow call's parameters are validated and converted to their type hints (pydantic, lax
mode, as Prefect does); bad ones are refused before anything runs, each one named with the
type it expects and the value it got."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import BaseModel, SecretStr

from plait import flow
from plait.exceptions import ParameterBindError


class Window(BaseModel):
    start: date
    days: int = 1


def test_values_are_converted_to_their_type_hints(plait_harness):
    seen = {}

    @flow
    def report(limit: int, ratio: float, since: date, window: Window, note="as given"):
        seen.update(limit=limit, ratio=ratio, since=since, window=window, note=note)
        return limit * 2

    assert report("7", "0.5", "2026-12-01", {"start": "2026-11-30", "days": "3"}, note=5) == 14
    assert seen == {"limit": 7, "ratio": 0.5, "since": date(2026, 12, 1),
                    "window": Window(start=date(2026, 11, 30), days=3), "note": 5}  # no hint: untouched
    [run] = plait_harness.flow_runs()
    assert plait_harness.flow_run(run["id"])["parameters"]["limit"] == 7


def test_a_value_of_the_wrong_type_is_refused_naming_parameter_type_and_value(plait_harness):
    ran = []

    @flow
    def load(day: str, limit: int = 10, ratio: float = 1.0):
        ran.append(limit)

    with pytest.raises(ParameterBindError) as caught:
        load("mon", limit="ten", ratio="half")
    message = str(caught.value)
    assert "flow 'load'" in message
    assert "parameter 'limit' expects int, got 'ten' (str)" in message
    assert "parameter 'ratio' expects float, got 'half' (str)" in message
    assert "validate_parameters=False" in message  # how to turn it off
    assert ran == [] and plait_harness.flow_runs() == []  # nothing ran, nothing recorded


def test_a_misspelt_keyword_gets_did_you_mean(plait_harness):
    @flow
    def daily(day: str, limit: int = 10):
        return day

    with pytest.raises(ParameterBindError) as caught:
        daily(dya="mon")
    message = str(caught.value)
    assert "unknown keyword 'dya': did you mean 'day'?" in message
    assert "'day'" in message.split("(unknown")[0]  # and the missing parameter is named too


def test_validate_parameters_false_passes_values_as_given(plait_harness):
    @flow(validate_parameters=False)
    def loose(limit: int):
        return limit

    assert loose(limit="ten") == "ten"


def test_a_bad_secret_parameter_is_named_but_its_value_never_shown(plait_harness):
    @flow
    def deploy(token: SecretStr, retries: int):
        return token.get_secret_value()

    assert deploy("tok-1f2e3d4c5b", 1) == "tok-1f2e3d4c5b"  # a plain string becomes a SecretStr
    with pytest.raises(ParameterBindError) as caught:
        deploy(token=4815162342, retries="many")
    message = str(caught.value)
    assert "parameter 'token' expects SecretStr" in message and "4815162342" not in message
    assert "parameter 'retries' expects int, got 'many' (str)" in message


def test_async_flows_validate_too(plait_harness):
    import asyncio

    @flow
    async def fetch(count: int) -> int:
        return count + 1

    assert asyncio.run(fetch("41")) == 42
    with pytest.raises(ParameterBindError, match="parameter 'count' expects int"):
        asyncio.run(fetch("lots"))
