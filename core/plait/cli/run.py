"""``plait run path.py:flow --param k=v``: run a flow once, in this process, recorded.

No ``if __name__ == "__main__":`` block is needed: the entrypoint is loaded as a worker
loads it, the parameters are checked against the flow's signature (and converted to the
annotated types) before anything runs, and the run is recorded like any other (local store,
or the server ``PLAIT_API_URL`` names). The exit status is 0 when the run Completed, 1
otherwise.

``run_entrypoint`` is the plain function behind it; ``parse_params`` turns ``--param``
values into parameters (also used by ``plait deployment run``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import click

from plait.cli._app import json_option

__all__ = ["parse_params", "run_entrypoint", "run_cmd"]

_RESULT_CHARS = 300


def parse_params(assignments: Iterable[str], params_json: str | None = None) -> dict[str, Any]:
    """``["n=3", "name=ann", 'tags=["a"]']`` -> ``{"n": 3, "name": "ann", "tags": ["a"]}``.

    A value is parsed as JSON when it is JSON (``3``, ``true``, ``null``, ``[1]``,
    ``"007"``), else taken as text. ``params_json`` (a JSON object) comes first;
    assignments override it.

    Raises:
        ValueError: An assignment without ``=`` or a name, or ``params_json`` is not a
            JSON object.
    """
    values: dict[str, Any] = {}
    if params_json is not None:
        try:
            loaded = json.loads(params_json)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--params is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"--params must be a JSON object of names to values, got {type(loaded).__name__}")
        values.update(loaded)
    for item in assignments:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError("--param takes NAME=VALUE; one argument has no '=' or no name")
        try:
            values[name] = json.loads(text)
        except json.JSONDecodeError:
            values[name] = text
    return values


def run_entrypoint(entrypoint: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Load the flow at ``entrypoint`` and run it once with ``parameters``.

    Returns:
        ``{flow_run_id, flow_name, state_type, state_name, message, result}``; ``result``
        is the return value's repr (cut at 300 characters) when it Completed.

    Raises:
        EntrypointError: The entrypoint cannot be loaded (the message says why).
        ParameterBindError: A parameter the flow does not take, a wrong type, or a
            required one missing.
    """
    import asyncio

    from plait._callables import safe_repr
    from plait.infrastructure import load_flow, new_flow_run_id

    flow = load_flow(entrypoint)
    values = flow.check_parameters(parameters) if flow.options.validate_parameters else dict(parameters)
    run_id = new_flow_run_id()
    # the id a launcher gives its child: the flow adopts it, so we can name the run it made
    os.environ["PLAIT_FLOW_RUN_ID"] = run_id
    try:
        state = asyncio.run(flow(**values, return_state=True)) if flow.is_async else flow(**values,
                                                                                         return_state=True)
    finally:
        os.environ.pop("PLAIT_FLOW_RUN_ID", None)
    result = None
    if state.is_completed():
        value = state.result(raise_on_failure=False)
        if value is not None:
            result = safe_repr(value)
            if len(result) > _RESULT_CHARS:
                result = result[: _RESULT_CHARS - 3] + "..."
    return {
        "flow_run_id": run_id,
        "flow_name": flow.name,
        "state_type": state.type.value,
        "state_name": state.name,
        "message": state.message,
        "result": result,
    }


@click.command("run")
@click.argument("entrypoint", metavar="ENTRYPOINT")
@click.option("--param", "-p", "assignments", multiple=True, metavar="NAME=VALUE",
              help="A parameter (repeatable); the value is JSON when it parses as JSON, else text.")
@click.option("--params", "params_json", metavar="JSON", help="All parameters as one JSON object.")
@json_option
def run_cmd(entrypoint: str, assignments: tuple[str, ...], params_json: str | None, as_json: bool) -> None:
    """Run a flow once, here, and record it: plait run flows/etl.py:etl --param days=3

    ENTRYPOINT is path/to/file.py:flow_name or package.module:flow_name. Parameters are
    checked against the flow's signature first. Exits 0 when the run Completed, else 1.
    """
    from plait.cli._app import scrub
    from plait.cli._output import echo_json, print_fields, state_cell

    outcome = run_entrypoint(entrypoint, parse_params(assignments, params_json))
    if as_json:
        echo_json(outcome)
    else:
        click.echo("")
        fields: list[tuple[str, Any]] = [
            ("Flow run", outcome["flow_run_id"]),
            ("Flow", outcome["flow_name"]),
            ("State", state_cell(outcome["state_type"], outcome["state_name"])),
        ]
        if outcome["message"]:
            fields.append(("Message", scrub(outcome["message"])))
        if outcome["result"] is not None:
            fields.append(("Result", scrub(outcome["result"])))
        print_fields(fields)
    if outcome["state_type"] not in ("COMPLETED", "CACHED"):
        raise click.exceptions.Exit(1)
