"""schemathesis against the API's own OpenAPI document, on a real server with an admin key:
for every operation a bounded number of generated requests (valid and invalid ones), none
of which may get a 500, an undocumented status code, or a body that its documented schema
does not describe.

Left out: ``GET /api/v1/events/stream``. It answers ``text/event-stream`` for as long as
the client listens (a test client would wait for ever), and its body is SSE text, not JSON
the document could describe; tests/test_server_events.py and the canary walk call it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import DataGenerationMethod
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from plait.testing import throwaway_postgres_database
from plait.testing._server import ServerHandle, running_server

pytestmark = pytest.mark.slow

# FastAPI writes OpenAPI 3.1; schemathesis 3.x reads it once this is on.
schemathesis.experimental.OPEN_API_3_1.enable()


def _bridge_hypothesis_many() -> None:
    """hypothesis-jsonschema 0.23 draws object properties with ``many.more()``, which newer
    hypothesis releases replaced by ``with many(...) as elements: for _ in elements``; without
    this bridge no object (query parameters, bodies) can be generated at all. It drives the
    new protocol from the old call, and does nothing on a hypothesis that still has ``more``."""
    from hypothesis.internal.conjecture import utils

    if hasattr(utils.many, "more"):
        return

    def more(self: Any) -> bool:
        if not hasattr(self, "_bridged"):
            self.__enter__()
            self._bridged = iter(self)
        try:
            next(self._bridged)
        except StopIteration:
            self.__exit__(None)
            return False
        return True

    utils.many.more = more  # type: ignore[attr-defined]


_bridge_hypothesis_many()

MAX_EXAMPLES = 15  # per operation and generation method: bounded, so the suite stays quick
STREAM = "/api/v1/events/stream"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    # PostgreSQL too: it refuses text SQLite takes (NUL), which must be a 4xx, never a 5xx
    home = tmp_path_factory.mktemp("schemathesis-server")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{home / 'plait.db'}"
        else:
            url = stack.enter_context(throwaway_postgres_database("plait_srv_schemathesis"))
        yield stack.enter_context(running_server(url, home))


@pytest.fixture(scope="module")
def api_schema(server: ServerHandle) -> schemathesis.schemas.BaseSchema:
    schema = schemathesis.from_uri(
        f"{server.url}/api/v1/openapi.json",
        base_url=server.url,
        data_generation_methods=[DataGenerationMethod.positive, DataGenerationMethod.negative],
    )
    return schema.exclude(path=STREAM)


schema = schemathesis.from_pytest_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)
def test_the_api_answers_what_its_document_says(case: schemathesis.Case, server: ServerHandle) -> None:
    response = case.call(headers=server.headers("admin"), timeout=60)
    case.validate_response(response, checks=(not_a_server_error, response_schema_conformance,
                                             status_code_conformance))


def test_the_stream_is_the_only_operation_left_out(api_schema: schemathesis.schemas.BaseSchema,
                                                   server: ServerHandle) -> None:
    import httpx

    document = httpx.get(f"{server.url}/api/v1/openapi.json").json()
    every = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    tested = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert every - tested == {("GET", STREAM)}
