"""The plait server's client: its I/O-free core (requests built, answers and failures read,
the event stream parsed, recorder batches on the wire), and the client against a real
server (``plait server start`` on 127.0.0.1, SQLite) for every method.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field, SecretStr

from plait import flow, get_run_logger, task
from plait._api import (
    ApiAuthError,
    ApiCalls,
    ApiConfig,
    ApiConfigError,
    ApiError,
    ApiNotFound,
    ApiUnavailable,
    Event,
    Page,
    SseParser,
    api_digest,
    normalize_api_url,
)
from plait._api._core import encode_json
from plait._api._sse import EventStream, SseMessage, event_from_message
from plait._api.sink import ApiRunSink, split_batch
from plait._batch import BatchRows
from plait.blocks import Block
from plait.client import AsyncPlaitClient, PlaitClient
from plait.states import StateType

KEY = "plait_abcdefgh_" + "s3cr3t-k3y-value-0123456789abcdef"
URL = "http://127.0.0.1:4300/api"


def calls(key: str | None = KEY, url: str = URL) -> ApiCalls:
    return ApiCalls(ApiConfig(url, key, 5.0))


def body(error: dict[str, Any] | None = None, **data: Any) -> bytes:
    return json.dumps({"error": error} if error is not None else data).encode()


# -- where the server is ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:4300/api", "http://127.0.0.1:4300/api"),
        ("http://127.0.0.1:4300/api/", "http://127.0.0.1:4300/api"),
        ("http://127.0.0.1:4300/api/v1", "http://127.0.0.1:4300/api"),
        ("  HTTPS://Plait.Example.COM/plait/api/v1/  ", "https://plait.example.com/plait/api"),
        ("http://user:pw@Host:80/api", "http://user:pw@host:80/api"),
    ],
)
def test_api_urls_are_normalized(given: str, expected: str) -> None:
    assert normalize_api_url(given) == expected


@pytest.mark.parametrize("bad", ["", "127.0.0.1:4300", "ftp://host/api", "http:///api", "http://h/api?x=1"])
def test_a_bad_api_url_says_what_to_set(bad: str) -> None:
    with pytest.raises(ApiConfigError, match="PLAIT_API_URL"):
        ApiConfig(bad)


def test_the_digest_names_the_server_not_its_spelling_or_credentials() -> None:
    digest = api_digest(URL)
    assert digest.startswith("api-") and len(digest) == 24
    assert api_digest("http://127.0.0.1:4300/api/v1/") == digest
    assert api_digest("http://u:p@127.0.0.1:4300/api") == digest
    assert api_digest("http://127.0.0.1:4301/api") != digest


def test_the_key_never_shows_in_repr_or_str() -> None:
    config = ApiConfig(URL, KEY, 3.0)
    core = calls()
    request = core.health().request
    for text in (repr(config), str(config), repr(core), repr(request), str(request)):
        assert KEY not in text and "s3cr3t" not in text
    assert "api_key=set" in repr(config)
    assert request.headers["Authorization"] == f"Bearer {KEY}"  # it is sent, just never shown


def test_a_password_in_the_url_is_masked_in_labels() -> None:
    config = ApiConfig("http://admin:hunter2hunter2@127.0.0.1:4300/api")
    assert "hunter2" not in config.label and "hunter2" not in repr(config)


def test_from_settings_without_a_url_says_what_to_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path))
    monkeypatch.delenv("PLAIT_API_URL", raising=False)
    with pytest.raises(ApiConfigError, match="set PLAIT_API_URL"):
        ApiConfig.from_settings()
    monkeypatch.setenv("PLAIT_API_URL", URL + "/")
    monkeypatch.setenv("PLAIT_API_KEY", KEY)
    monkeypatch.setenv("PLAIT_API_TIMEOUT", "2.5")
    config = ApiConfig.from_settings()
    assert (config.url, config.api_key, config.timeout) == (URL, KEY, 2.5)


def test_a_bad_timeout_is_refused() -> None:
    for bad in (0, -1, "10", True):
        with pytest.raises(ApiConfigError, match="timeout"):
            ApiConfig(URL, None, bad)  # type: ignore[arg-type]


# -- building requests ----------------------------------------------------------------------------
def test_requests_carry_the_version_the_key_and_a_user_agent() -> None:
    request = calls().flow_run("abc").request
    assert (request.method, request.url) == ("GET", "http://127.0.0.1:4300/api/v1/flow-runs/abc")
    assert request.headers["User-Agent"].startswith("plait/")
    assert request.headers["Accept"] == "application/json"
    assert "Authorization" not in calls(key=None).health().request.headers


def test_filters_become_query_parameters() -> None:
    since = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    request = calls().flow_runs(flow=["etl", "report"], state=[StateType.FAILED, "crashed"], tag="prod",
                                top_level=True, since=since, limit=10, cursor="xyz").request
    assert request.params == (
        ("flow", "etl"), ("flow", "report"), ("state", "FAILED"), ("state", "CRASHED"), ("tag", "prod"),
        ("top_level", "true"), ("since", "2024-05-01T12:00:00+00:00"), ("limit", "10"), ("cursor", "xyz"),
    )
    assert calls().flow_runs().request.params == ()  # nothing given, nothing sent
    assert calls().logs(level="warning", flow_run="f").request.params == (("flow_run", "f"), ("level", "WARNING"))


@pytest.mark.parametrize("bad", [0, -3, True, 2.5])
def test_a_bad_limit_is_refused_before_sending(bad: Any) -> None:
    with pytest.raises(ValueError, match="limit must be a whole number >= 1"):
        calls().flow_runs(limit=bad)


def test_ids_are_one_path_segment_whatever_they_hold() -> None:
    request = calls().flow_run("../../blocks/documents/x/y").request
    assert request.url == "http://127.0.0.1:4300/api/v1/flow-runs/..%2F..%2Fblocks%2Fdocuments%2Fx%2Fy"
    assert calls().block_document("my type", "a/b", include_secrets=True).request.url.endswith(
        "/blocks/documents/my%20type/a%2Fb")
    with pytest.raises(ValueError, match="flow_run_id must be a non-empty string"):
        calls().flow_run("  ")


def test_bodies_are_strict_json_even_with_nan() -> None:
    request = calls().post_records("b1", {"new_flows": [{"parameters": {"x": math.nan, "y": [math.inf, 1.5]}}]}).request
    assert request.headers["Content-Type"] == "application/json"
    assert request.content is not None
    decoded = json.loads(request.content)  # strict: NaN would make it invalid JSON
    assert decoded == {"batch_id": "b1", "rows": {"new_flows": [{"parameters": {"x": "nan", "y": ["inf", 1.5]}}]}}
    assert encode_json({"text": "zß€"}) == '{"text":"zß€"}'.encode()


def test_a_page_call_follows_the_cursor_with_the_same_filters() -> None:
    call = calls().task_runs(flow_run="f1", limit=2)
    assert call.follow is not None
    page = call.convert({"items": [{"id": "a"}, {"id": "b"}], "next_cursor": "c2"})
    assert page == Page([{"id": "a"}, {"id": "b"}], "c2")
    following = call.follow(page)
    assert following is not None
    assert following.request.params == (("flow_run", "f1"), ("limit", "2"), ("cursor", "c2"))
    last = following.convert({"items": [], "next_cursor": None})
    assert following.follow is not None and following.follow(last) is None


def test_the_event_stream_resumes_after_the_last_event() -> None:
    first = calls().event_stream(kind="logs.written", after=5)
    assert first.headers["Accept"] == "text/event-stream" and "Last-Event-ID" not in first.headers
    assert first.params == (("kind", "logs.written"), ("after", "5"))
    again = calls().event_stream(kind="logs.written", after=5, last_event_id="17")
    assert again.headers["Last-Event-ID"] == "17" and ("after", "5") not in again.params


# -- reading answers ------------------------------------------------------------------------------
def test_a_2xx_answer_becomes_data() -> None:
    core = calls()
    call = core.flow_run("abc")
    assert core.finish(call, 200, body(id="abc", state_type="COMPLETED")) == {"id": "abc", "state_type": "COMPLETED"}
    state = core.flow_run_state("abc")
    assert core.finish(state, 200, body(id="abc", state_type="RUNNING")) is StateType.RUNNING
    assert core.finish(state, 200, body(id="abc", state_type=None)) is None
    assert core.finish(state, 404, body({"code": "not_found", "message": "no flow run 'abc'"})) is None
    assert core.finish(core.delete_block_document("s", "n"), 204, b"") == {}


def test_an_answer_of_the_wrong_shape_is_an_error_not_a_crash() -> None:
    core = calls()
    with pytest.raises(ApiError, match="not JSON") as info:
        core.finish(core.health(), 200, b"<html>hello</html>")
    assert info.value.code == "bad_response"
    with pytest.raises(ApiError, match="expected a JSON object"):
        core.finish(core.flow_run("x"), 200, b"[1, 2]")
    with pytest.raises(ApiError, match="not a list of items"):
        core.finish(core.flow_runs(), 200, body(nothing=1))


@pytest.mark.parametrize(
    ("status", "cls", "words"),
    [
        (401, ApiAuthError, "Set PLAIT_API_KEY"),
        (403, ApiAuthError, "larger scope"),
        (404, ApiNotFound, "no such thing"),
        (409, ApiError, "no such thing"),
        (422, ApiError, "no such thing"),
        (500, ApiError, "no such thing"),
        (502, ApiUnavailable, "try again later"),
        (503, ApiUnavailable, "try again later"),
        (504, ApiUnavailable, "try again later"),
        (429, ApiUnavailable, "try again later"),
    ],
)
def test_error_answers_map_to_error_classes(status: int, cls: type[ApiError], words: str) -> None:
    core = calls()
    error = {"code": "some_code", "message": "no such thing", "detail": [{"field": "limit"}]}
    with pytest.raises(cls, match=words) as info:
        core.finish(core.flow_runs(), status, body(error))
    assert type(info.value) is cls
    assert (info.value.status, info.value.code) == (status, "some_code")
    assert info.value.detail == [{"field": "limit"}]
    assert "127.0.0.1:4300" in str(info.value)


def test_an_answer_from_something_else_than_a_plait_server_says_to_check_the_url() -> None:
    core = calls()
    with pytest.raises(ApiNotFound, match="check that PLAIT_API_URL is the plait server's API") as info:
        core.finish(core.health(), 404, b"<h1>Not Found</h1>", "Not Found")
    assert info.value.code == "http_404"
    with pytest.raises(ApiUnavailable, match="502"):
        core.finish(core.health(), 502, b"<html>Bad Gateway</html>", "Bad Gateway")


def test_the_key_never_appears_in_an_error_even_when_the_server_echoes_it() -> None:
    core = calls()
    echoed = {"code": "unauthorized", "message": f"unknown key {KEY}", "detail": {"key": KEY}}
    with pytest.raises(ApiAuthError) as info:
        core.finish(core.health(), 401, body(echoed))
    for text in (str(info.value), repr(info.value), json.dumps(info.value.detail)):
        assert KEY not in text and "s3cr3t-k3y" not in text
    with pytest.raises(ApiError) as other:
        core.finish(core.health(), 500, f"crash {KEY}".encode())
    assert KEY not in str(other.value)


def test_no_answer_is_unavailable() -> None:
    import httpx

    core = calls()
    request = core.health().request
    refused = core.transport_error(request, httpx.ConnectError("[Errno 111] Connection refused"))
    assert isinstance(refused, ApiUnavailable)
    assert "did not answer GET /health" in str(refused) and "plait server start" in str(refused)
    slow = core.transport_error(request, httpx.ReadTimeout("timed out"))
    assert isinstance(slow, ApiUnavailable) and "within 5s" in str(slow)
    dropped = core.transport_error(request, httpx.RemoteProtocolError("Server disconnected"))
    assert isinstance(dropped, ApiUnavailable)
    odd = core.transport_error(request, httpx.UnsupportedProtocol("no"))
    assert type(odd) is ApiError and "check PLAIT_API_URL" in str(odd)


def test_api_errors_survive_pickling() -> None:
    import pickle

    error = ApiNotFound("gone", status=404, code="not_found", detail={"id": "x"})
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is ApiNotFound and (again.status, again.code, again.detail) == (404, "not_found", {"id": "x"})
    assert isinstance(again, LookupError)


# -- the event stream -------------------------------------------------------------------------------
STREAM = (
    "\ufeff: keep-alive\r\n\r\n"
    "id: 1\nevent: flow-run.state-changed\n"
    'data: {"seq": 1, "id": "e1", "kind": "flow-run.state-changed", "resource": "flow-run/a",\n'
    'data:  "payload": {"state_type": "RUNNING", "name": "zürich"}}\n\n'
    "retry: 2500\r"
    'id: 2\rdata: {"seq": 2, "id": "e2", "kind": "logs.written", "resource": "flow-run/a", "payload": {}}\r\r'
    "id: bad\0id\n"
    "data:no-space\n\n"
    "event: ignored-without-data\n\n"
    'id: 3\ndata: {"seq": 3, "kind": "cut", "resource": "x"'  # the stream ends mid-message
)


def _events(chunks: list[bytes]) -> tuple[list[SseMessage], SseParser]:
    parser = SseParser()
    messages: list[SseMessage] = []
    for chunk in chunks:
        messages += parser.feed(chunk)
    return messages, parser


def test_sse_messages_whole() -> None:
    messages, parser = _events([STREAM.encode()])
    assert [m.id for m in messages] == ["1", "2", "2"]
    assert [m.event for m in messages] == ["flow-run.state-changed", "message", "message"]
    assert messages[0].data.endswith('"name": "zürich"}}') and "\n" in messages[0].data
    assert messages[2].data == "no-space"
    assert parser.retry == 2500 and parser.last_event_id == "3"  # "id: bad\0id" is ignored


def test_sse_parsing_does_not_depend_on_how_the_bytes_arrive() -> None:
    data = STREAM.encode()
    whole, _ = _events([data])
    for size in (1, 2, 3, 7, 64):
        pieces = [data[i:i + size] for i in range(0, len(data), size)]
        assert _events(pieces)[0] == whole, size
    for cut in range(len(data)):  # every split in two, including inside "\r\n" and "ü"
        assert _events([data[:cut], data[cut:]])[0] == whole, cut


def test_stream_messages_become_events() -> None:
    messages, _ = _events([STREAM.encode()])
    first = event_from_message(messages[0])
    assert first == Event(1, "e1", None, "flow-run.state-changed", "flow-run/a",
                          {"state_type": "RUNNING", "name": "zürich"})
    assert event_from_message(SseMessage("no-space")) is None  # not JSON: another sort of message
    with pytest.raises(ApiError, match="integer 'seq'"):
        event_from_message(SseMessage('{"seq": "x", "kind": "k"}'))
    assert event_from_message(SseMessage('{"hello": 1}')) is None  # not an event
    seq_from_id = event_from_message(SseMessage('{"kind": "block.saved", "resource": "block/s/n"}', id="9"))
    assert seq_from_id is not None and seq_from_id.seq == 9


def test_event_stream_state_machine_reconnects_after_the_last_event() -> None:
    core = calls()
    stream = EventStream(lambda last: core.event_stream(after=0, last_event_id=last))
    assert "Last-Event-ID" not in stream.next_request().headers
    chunk = b'retry: 100\nid: 7\ndata: {"seq": 7, "id": "x", "kind": "k", "resource": "r"}\n\n'
    assert [e.seq for e in stream.received(chunk)] == [7]
    assert stream.ended(ApiUnavailable("down")) == pytest.approx(0.1)
    assert stream.next_request().headers["Last-Event-ID"] == "7"
    assert stream.ended(None) == pytest.approx(0.2)  # doubles while failing
    with pytest.raises(ApiAuthError):
        stream.ended(ApiAuthError("no"))  # not a reason to reconnect
    once = EventStream(lambda last: core.event_stream(last_event_id=last), reconnect=False)
    assert once.ended(None) is None
    with pytest.raises(ApiUnavailable):
        once.ended(ApiUnavailable("down"))


# -- recorder batches on the wire -----------------------------------------------------------------------
def _batch() -> BatchRows:
    now = datetime(2024, 6, 1, 8, 30, 15, 123456, tzinfo=UTC)
    flow = {
        "id": "f1", "flow_name": "etl", "name": "etl-1", "parameters": {"when": "2024-06-01", "n": [1, 2.5, None]},
        "tags": ["a"], "state_type": "RUNNING", "state_name": "Running", "state_message": "ünïcode ✓",
        "parent_flow_run_id": None, "parent_task_run_id": None, "run_count": 1, "created": now,
        "start_time": now + timedelta(microseconds=1), "end_time": None, "pid": 4242, "hostname": "h",
        "heartbeat_at": now, "heartbeat_interval": 5.0,
    }
    task = {"id": "t1", "flow_run_id": "f1", "task_name": "extract", "created": now, "end_time": None}
    rows = BatchRows(new_flows=[flow], old_tasks=[task], now=now)
    rows.old_flows.append({"id": "f0", "_partial": True, "expect": "RUNNING", "state_type": "COMPLETED",
                           "end_time": now})
    rows.states.append({"run_id": "t1", "run_kind": "task", "flow_run_id": "f1", "type": "COMPLETED",
                        "name": "Completed", "message": None, "timestamp": now})
    rows.edges.append({"upstream_id": "t0", "downstream_id": "t1", "kind": "data", "parameter": "x"})
    rows.logs.append({"flow_run_id": "f1", "task_run_id": None, "level": 20, "logger": "l", "message": "hi",
                      "timestamp": now})
    rows.results.append({"task_run_id": "t1", "storage": "file:///s", "path": "p", "serializer": "json",
                         "cache_key": None, "expires_at": datetime(2039, 1, 1, tzinfo=UTC), "created": now})
    rows.heartbeats = ["f9"]
    return rows


def test_batch_rows_survive_the_wire() -> None:
    rows = _batch()
    wire = json.loads(encode_json(rows.to_wire()))  # through JSON text, as it travels
    assert wire["now"] == 1717230615123456 and wire["new_flows"][0]["created"] == 1717230615123456
    back = BatchRows.from_wire(wire)
    assert back == rows
    assert back.new_flows[0]["created"].tzinfo is not None


def test_a_batch_splits_in_order_and_keeps_every_record() -> None:
    rows = _batch()
    first, second = split_batch(rows)
    assert first.size + second.size == rows.size and abs(first.size - second.size) <= 1
    assert first.heartbeats == ["f9"] and second.heartbeats == []
    assert first.new_flows == rows.new_flows  # runs travel before what refers to them
    with pytest.raises(ValueError, match="fewer than two"):
        split_batch(BatchRows(logs=[{"message": "x"}]))


def test_the_sink_keeps_records_unless_the_server_refused_the_batch_itself() -> None:
    from plait._api import ApiSession

    sink = ApiRunSink(ApiSession(ApiConfig(URL, KEY)))
    assert sink.digest == api_digest(URL) and KEY not in repr(sink)
    keep = [ApiUnavailable("down"), ApiAuthError("bad key", status=401, code="unauthorized"),
            ApiError("boom", status=500, code="internal_error"), ApiNotFound("no", status=404, code="http_404"),
            ConnectionRefusedError(), TimeoutError()]
    drop = [ApiError("bad", status=422, code="validation_error"), ApiError("big", status=413, code="too_large"),
            ValueError("x")]
    assert [sink.unavailable(e) for e in keep] == [True] * len(keep)
    assert [sink.unavailable(e) for e in drop] == [False] * len(drop)


# -- sync and async stay equal --------------------------------------------------------------------------
def test_the_async_client_mirrors_the_sync_one() -> None:
    def public(cls: type) -> dict[str, Any]:
        return {n: m for n, m in vars(cls).items() if not n.startswith("_") and callable(m)}

    sync, asyn = public(PlaitClient), public(AsyncPlaitClient)
    assert set(sync) - {"close"} == set(asyn) - {"aclose"}
    for name, method in sync.items():
        if name == "close":
            continue
        other = asyn[name]
        assert inspect.signature(method).parameters.keys() == inspect.signature(other).parameters.keys(), name
        streaming = name.startswith(("iter_", "stream_"))
        assert inspect.iscoroutinefunction(other) is not streaming, name
        assert (method.__doc__ or "").strip(), f"PlaitClient.{name} has no docstring"


def test_the_client_exports_what_its_docs_show() -> None:
    import plait.client

    assert set(plait.client.__all__) == {
        "ApiAuthError", "ApiConfigError", "ApiError", "ApiNotFound", "ApiUnavailable", "AsyncPlaitClient", "Event",
        "Page", "PlaitClient",
    }


def test_import_plait_loads_no_http_client() -> None:
    import subprocess
    import sys

    code = "import sys, plait; print(any(m == 'httpx' or m.startswith('plait._api') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# == against a real server ===============================================================================
# One server (SQLite) for the tests below; the history it serves is recorded by running flows
# in this process against the same database file.


class ClientTestCredentials(Block):
    """Credentials for the client tests."""

    user: str = Field(description="Who.")
    password: SecretStr = Field(description="Their password.")


class ClientTestService(Block):
    """A service the client tests save and load."""

    url: str = Field(description="Where.")
    credentials: ClientTestCredentials = Field(description="How to log in.")


@task
def double(x: int) -> int:
    get_run_logger().info("doubling %d", x)
    return 2 * x


@task(persist_result=True)
def total(values: list[int]) -> int:
    return sum(values)


@flow(name="client-child")
def child(n: int) -> int:
    get_run_logger().warning("child of %d", n)
    return double(n)


@flow(name="client-parent")
def parent(n: int) -> int:
    values = [double(i) for i in range(n)]
    return total(values) + child(n)


@task
def explode() -> None:
    raise ValueError("boom")


@flow(name="client-failing")
def failing() -> None:
    explode()


@dataclass
class Served:
    url: str
    api_url: str
    keys: dict[str, str]
    parents: list[str]
    failed: str
    server: Any
    database_url: str
    home: Path  # the server's PLAIT_HOME (its encryption key)


def _record_history(database_url: str) -> tuple[list[str], str]:
    from plait.testing import plait_test_harness

    with plait_test_harness(database_url=database_url) as harness:
        for n in (2, 3, 4):
            parent.with_options(tags=["client-test", f"n{n}"])(n)
        failed = failing(return_state=True)
        assert failed.is_failed()
        harness.flush()
        runs = harness.flow_runs(flow_name="client-parent", limit=10)
        failed_id = harness.flow_runs(flow_name="client-failing", limit=1)[0]["id"]
    return [r["id"] for r in runs], failed_id


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from plait.testing._server import running_server

    root = tmp_path_factory.mktemp("client-server")
    database_url = f"sqlite:///{root / 'plait.db'}"
    parents, failed = _record_history(database_url)
    with running_server(database_url, root / "server") as server:
        keys = {"admin": server.admin_key, "run": server.run_key, "read": server.read_key}
        yield Served(server.url, server.api_url, keys, parents, failed, server, database_url, root / "server")


def client_for(served: Served, scope: str | None = "read") -> PlaitClient:
    return PlaitClient(served.api_url, served.keys[scope] if scope else None, timeout=30)


@pytest.mark.slow
def test_health_needs_no_key(served: Served) -> None:
    with client_for(served, None) as client:
        health = client.health()
    assert health["status"] == "ok" and health["database"] == "sqlite"


@pytest.mark.slow
def test_flow_runs_page_by_page(served: Served) -> None:
    with client_for(served) as client:
        first = client.flow_runs(flow="client-parent", limit=2)
        assert len(first.items) == 2 and first.next_cursor
        second = client.flow_runs(flow="client-parent", limit=2, cursor=first.next_cursor)
        every = list(client.iter_flow_runs(flow="client-parent", page_size=1))
        tagged = list(client.iter_flow_runs(tag=["client-test", "n3"]))
        failed = client.flow_runs(state="failed").items
        children = client.flow_runs(flow="client-child", top_level=False).items
        top = client.flow_runs(flow="client-child", top_level=True).items
    ids = [r["id"] for r in every]
    assert ids == served.parents  # newest first, each once, across pages
    assert [r["id"] for r in first.items + second.items] == ids[:4][: len(first.items) + len(second.items)]
    assert len(tagged) == 1 and tagged[0]["tags"] == ["client-test", "n3"]
    assert [r["id"] for r in failed] == [served.failed]
    assert len(children) == 3 and top == []


@pytest.mark.slow
def test_one_flow_run_whole_with_its_tasks_and_logs(served: Served) -> None:
    run_id = served.parents[-1]  # n=2: double(0), double(1), total, child(2)
    with client_for(served) as client:
        run = client.flow_run(run_id)
        state = client.flow_run_state(run_id)
        tasks = list(client.iter_task_runs(flow_run=run_id))
        one = client.task_run(tasks[0]["id"])
        lines = list(client.iter_logs(flow_run=run_id, page_size=1))
        warnings = client.logs(flow_run=run["subflows"][0]["id"], level="WARNING").items
        results = client.results(task_run=next(t["id"] for t in tasks if t["task_name"] == "total")).items
        with pytest.raises(ApiNotFound, match="no-such-run"):
            client.flow_run("no-such-run")
        assert client.flow_run_state("no-such-run") is None
    assert run["id"] == run_id and run["state_type"] == "COMPLETED" and run["parameters"] == {"n": 2}
    assert [s["type"] for s in run["states"]] == ["PENDING", "RUNNING", "COMPLETED"]
    assert sorted(t["task_name"] for t in run["task_runs"]) == ["double", "double", "total"]
    assert state is StateType.COMPLETED
    assert len(tasks) == 3 and one["id"] == tasks[0]["id"]
    messages = [line["message"] for line in lines]  # one line a page, all pages
    assert [m for m in messages if m.startswith("doubling")] == ["doubling 0", "doubling 1"]
    assert messages[0].startswith("Beginning flow run") and len(messages) == len(set(messages))
    assert [line["message"] for line in warnings] == ["child of 2"]
    assert len(results) == 1 and results[0]["serializer"]


@pytest.mark.slow
def test_keys_are_checked(served: Served) -> None:
    with client_for(served, None) as client, pytest.raises(ApiAuthError, match="PLAIT_API_KEY") as info:
        client.flow_runs()
    assert info.value.status == 401
    with PlaitClient(served.api_url, "plait_nothing_" + "x" * 32) as client, pytest.raises(ApiAuthError) as bad:
        client.flow_runs()
    assert "plait_nothing_" not in str(bad.value)
    with client_for(served, "read") as client, pytest.raises(ApiAuthError, match="larger scope") as scope:
        client.save_block(ClientTestCredentials(user="u", password="p"), f"c-{uuid.uuid4().hex[:6]}")
    assert scope.value.status == 403


@pytest.mark.slow
def test_a_bad_filter_is_an_error_naming_it(served: Served) -> None:
    with client_for(served) as client, pytest.raises(ApiError) as info:
        client.flow_runs(cursor="not-a-cursor")
    assert info.value.status in (400, 422) and "cursor" in str(info.value)


@pytest.mark.slow
def test_blocks_through_the_client(served: Served) -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    name = f"svc-{uuid.uuid4().hex[:8]}"
    block = ClientTestService(url="https://svc", credentials=ClientTestCredentials(user="etl", password=secret))
    with client_for(served, "run") as client:
        saved = client.save_block(block, name)
        with pytest.raises(ApiError) as taken:
            client.save_block(block, name)
        again = client.save_block(block, name, overwrite=True)
        masked = client.block_document("client-test-service", name)
        revealed = client.block_document("client-test-service", name, include_secrets=True)
        listed = client.block_documents(type="client-test-service")
        anonymous = client.block_documents(type="client-test-credentials", include_anonymous=True)
        types = {t["slug"] for t in client.block_types()}
        schema = client.block_type("client-test-service")
        with pytest.raises(ApiAuthError):
            client.delete_block_document("client-test-service", name)  # needs admin
    assert taken.value.status == 409
    assert saved["id"] == again["id"] and secret not in json.dumps(saved) + json.dumps(masked)
    assert masked["data"]["credentials"]["$block"]["data"]["password"] == "***"
    assert revealed["data"]["credentials"]["$block"]["data"]["password"] == secret
    assert name in [d["name"] for d in listed]
    assert any(d["name"].startswith("anonymous-") for d in anonymous)
    assert {"client-test-service", "client-test-credentials"} <= types
    assert "url" in schema["json_schema"]["properties"]
    with client_for(served, "admin") as admin:
        deleted = admin.delete_block_document("client-test-service", name)
        with pytest.raises(ApiNotFound):
            admin.block_document("client-test-service", name)
    assert deleted["deleted"]["name"] == name


@pytest.mark.slow
def test_events_and_the_live_stream(served: Served) -> None:
    import threading

    with client_for(served) as client:
        stored = list(client.iter_events(kind="flow-run.state-changed", page_size=5))
        newest = max(e.seq for e in client.iter_events())
    assert stored and all(e.kind == "flow-run.state-changed" for e in stored)
    assert [e.seq for e in stored] == sorted(e.seq for e in stored)
    got: list[Event] = []
    failed: list[BaseException] = []
    ready = threading.Event()

    def listen() -> None:
        try:
            with client_for(served) as client:
                for event in client.stream_events(kind="block.saved", after=newest, reconnect=False):
                    got.append(event)
                    break
        except BaseException as exc:  # reported by the test below
            failed.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    name = f"ev-{uuid.uuid4().hex[:8]}"
    with client_for(served, "run") as client:
        client.save_block(ClientTestCredentials(user="u", password="p"), name)
    assert ready.wait(60), "no block.saved event arrived on the stream"
    assert not failed, f"the stream failed: {failed[0]!r}"
    assert got[0].kind == "block.saved" and got[0].resource == f"block/client-test-credentials/{name}"
    assert got[0].seq > newest


@pytest.mark.slow
def test_the_async_client_answers_as_the_sync_one(served: Served) -> None:
    async def read() -> tuple[Any, ...]:
        async with AsyncPlaitClient(served.api_url, served.keys["read"]) as client:
            health = await client.health()
            runs = [r["id"] async for r in client.iter_flow_runs(flow="client-parent", page_size=2)]
            run = await client.flow_run(served.parents[0])
            page = await client.flow_runs(flow="client-parent", limit=1)
            rules = await client.notification_rules()
            with pytest.raises(ApiNotFound):
                await client.task_run("no-such-task-run")
            return health, runs, run, page, rules

    health, runs, run, page, rules = asyncio.run(read())
    with client_for(served) as client:
        assert health == client.health()
        assert runs == [r["id"] for r in client.iter_flow_runs(flow="client-parent")]
        assert run == client.flow_run(served.parents[0])
        assert page.items == client.flow_runs(flow="client-parent", limit=1).items
        assert rules == client.notification_rules()


@pytest.mark.slow
def test_blocks_load_and_save_through_the_server(served: Served, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    from plait.blocks import _remote
    from plait.exceptions import BlockNotFound

    monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "worker"))
    monkeypatch.setenv("PLAIT_API_URL", served.api_url)
    monkeypatch.setenv("PLAIT_API_KEY", served.keys["run"])
    monkeypatch.setenv("PLAIT_DATABASE_URL", f"sqlite:///{tmp_path / 'never-used.db'}")
    secret = f"pw-{uuid.uuid4().hex}"
    name = f"w-{uuid.uuid4().hex[:8]}"
    try:
        assert _remote.active()
        creds = ClientTestCredentials(user="etl", password=secret)
        doc_id = _remote.save_block(ClientTestService(url="https://w", credentials=creds), f"{name}-svc")
        _remote.save_block(creds, name)
        assert creds._document_name == name
        loaded = _remote.load_block(ClientTestService, f"{name}-svc")
        by_ref = _remote.load_block(ClientTestCredentials, f"client-test-credentials/{name}")
        listed = _remote.list_for_class(ClientTestCredentials)
        with pytest.raises(BlockNotFound, match="no saved"):
            _remote.load_block(ClientTestCredentials, name + "x")
        monkeypatch.setenv("PLAIT_API_KEY", served.keys["admin"])
        _remote.reset_sessions()
        _remote.delete_block(ClientTestService, f"{name}-svc")
        with pytest.raises(BlockNotFound):
            _remote.load_block(ClientTestService, f"{name}-svc")
    finally:
        _remote.reset_sessions()
    assert doc_id and loaded.credentials.password.get_secret_value() == secret
    assert loaded._document_id == doc_id and loaded.url == "https://w"
    assert by_ref == creds
    assert name in [d["name"] for d in listed]
    assert not (tmp_path / "never-used.db").exists()  # a worker needs no database


@pytest.mark.slow
def test_the_sink_stores_each_batch_once(served: Served) -> None:
    from plait._api import ApiSession
    from plait._runs import utcnow

    sink = ApiRunSink(ApiSession(ApiConfig(served.api_url, served.keys["run"])))
    run_id = str(uuid.uuid4())
    now = utcnow()
    row = {
        "id": run_id, "flow_name": "sink-flow", "name": "sink-1", "parameters": {}, "tags": [],
        "state_type": "RUNNING", "state_name": "Running", "state_message": None, "parent_flow_run_id": None,
        "parent_task_run_id": None, "run_count": 1, "created": now, "start_time": now, "end_time": None,
        "pid": 1, "hostname": "elsewhere", "heartbeat_at": now, "heartbeat_interval": 5.0,
    }
    rows = BatchRows(new_flows=[row], now=now)
    rows.states.append({"run_id": run_id, "run_kind": "flow", "flow_run_id": run_id, "type": "RUNNING",
                        "name": "Running", "message": None, "timestamp": now})
    rows.logs.append({"flow_run_id": run_id, "task_run_id": None, "level": 20, "logger": "t", "message": "once",
                      "timestamp": now})
    batch_id = f"test-{uuid.uuid4().hex}"
    try:
        assert sink.write(batch_id, rows) == (set(), 0, "")
        assert sink.write(batch_id, rows) == (set(), 0, "")  # a repeat: nothing added
        sink.replay(batch_id + "-r", rows)  # replaying what is stored adds nothing either
        assert sink.stored_flow_run_state(run_id) is StateType.RUNNING
        assert sink.stored_flow_run_state(str(uuid.uuid4())) is None
        with client_for(served) as client:
            assert [line["message"] for line in client.iter_logs(flow_run=run_id)] == ["once"]
            assert [s["type"] for s in client.flow_run(run_id)["states"]] == ["RUNNING"]
    finally:
        sink.close()


@pytest.mark.slow
def test_the_cli_reads_the_same_from_a_server_as_from_its_store(served: Served, tmp_path: Path) -> None:
    from plait.cli import _source, commands
    from plait.cli import blocks as cli_blocks
    from plait.testing import reset_state
    from plait_blocks import Email, Webhook

    name = f"cli-{uuid.uuid4().hex[:8]}"
    with client_for(served, "run") as client:
        client.save_block(Webhook(url="https://hooks.example.com/T0K3N", headers={"X-Token": "abc123xyz"}), name)
        client.save_block(Email(smtp_host="smtp", from_address="a@b.c", to_addresses=["d@e.f"], username="u",
                                password="pw1234"),
                          name)
    run_id = served.parents[0]

    def reads() -> dict[str, Any]:
        return {
            "ls": commands.flow_run_ls(flow_name="client-parent", limit=2),
            "ls_state": commands.flow_run_ls(state="failed", limit=5),
            "inspect": commands.flow_run_inspect(run_id),
            "inspect_prefix": commands.flow_run_inspect(run_id[:8]),
            "logs": commands.flow_run_logs(run_id),
            "blocks": cli_blocks.block_ls(),
            "webhooks": cli_blocks.block_ls(type_slug="webhook"),
            "webhook": cli_blocks.block_inspect(f"webhook/{name}"),
            "email": cli_blocks.block_inspect(f"email/{name}"),
        }

    def remote_reads() -> dict[str, Any]:
        assert _source.remote()
        return {
            "ls": _source.flow_run_ls(None, "client-parent", 2),
            "ls_state": _source.flow_run_ls("FAILED", None, 5),
            "inspect": commands.flow_run_inspect(run_id),  # the command adds why a run waits
            "inspect_prefix": commands.flow_run_inspect(run_id[:8]),
            "logs": _source.flow_run_logs(run_id),
            "blocks": _source.block_ls(None, False),
            "webhooks": _source.block_ls("webhook", False),
            "webhook": _source.block_inspect(f"webhook/{name}"),
            "email": _source.block_inspect(f"email/{name}"),
        }

    with pytest.MonkeyPatch.context() as patch:
        reset_state()
        patch.setenv("PLAIT_HOME", str(served.home))  # the server's: its encryption key decrypts
        patch.setenv("PLAIT_DATABASE_URL", served.database_url)
        patch.setenv("PLAIT_API_URL", "")
        local = reads()
        reset_state()
        patch.setenv("PLAIT_HOME", str(tmp_path / "client"))
        patch.setenv("PLAIT_DATABASE_URL", f"sqlite:///{tmp_path / 'unused.db'}")
        patch.setenv("PLAIT_API_URL", served.api_url)
        patch.setenv("PLAIT_API_KEY", served.keys["read"])  # reading needs no more
        remote = remote_reads()
        with pytest.raises(LookupError, match="no flow run matches 'ffffffff'"):
            _source.flow_run_inspect("ffffffff")
        reset_state()
    assert len(local["logs"]) > 5 and any(r["source"].startswith("subflow ") for r in local["logs"])
    assert local["webhook"]["fields"]["url"] == "***"
    for key in local:
        assert remote[key] == local[key], key
    assert not (tmp_path / "unused.db").exists()


@pytest.mark.slow
def test_a_restarting_server_is_unavailable_then_reached_again(tmp_path: Path) -> None:
    from plait.testing._server import running_server

    with running_server(f"sqlite:///{tmp_path / 'plait.db'}", tmp_path / "server") as server:
        with PlaitClient(server.api_url, server.read_key, timeout=5) as client:
            assert client.flow_runs().items == []  # a kept-alive connection now exists
            server.stop()
            with pytest.raises(ApiUnavailable, match="did not answer GET /flow-runs") as down:
                client.flow_runs()
            assert server.read_key not in str(down.value)
            server.start()
            assert client.flow_runs().items == []  # the same client, new connections

            async def read_async() -> dict[str, Any]:
                async with AsyncPlaitClient(server.api_url, server.read_key) as other:
                    return await other.health()

            assert asyncio.run(read_async())["status"] == "ok"
