"""The canary walk: with a secret saved in a block and history that tried to log it, every
route of the API's own OpenAPI document is called, and the secret appears in no response
body, no header and no line of the server's log — except where a key with scope ``run``
asks for it (``GET /blocks/documents/{slug}/{name}?include_secrets=true``).

The walk reads the routes from ``/api/v1/openapi.json``: a route added later without being
taught to ``CALLS`` below fails the walk, naming it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import Field, SecretStr

from plait.blocks import Block, CredentialsBlock
from plait.blocks._payloads import block_from_document, block_payload
from plait.testing import reset_state
from plait.testing._server import ServerHandle, running_server

pytestmark = pytest.mark.slow

CANARY = f"canary-{uuid.uuid4().hex}"


class CanaryCredentials(CredentialsBlock):
    """Credentials holding the canary."""

    user: str = Field(description="Who logs in.")
    token: SecretStr = Field(description="The secret token.")


class CanaryVault(Block):
    """A block holding the canary's credentials nested."""

    label: str = Field(description="A label.")
    credentials: CanaryCredentials = Field(description="The nested credentials.")


# -- the world the walk calls into ----------------------------------------------------------------------
@dataclass
class World:
    server: ServerHandle
    client: httpx.Client
    flow_run_id: str
    task_run_id: str
    log_ids: list[int]
    scheduled_run_id: str
    worker_id: str
    database: Path
    made: dict[str, str] = field(default_factory=dict)  # ids of what the walk itself created

    def headers(self, scope: str | None) -> dict[str, str]:
        return self.server.headers(scope) if scope else {}


def _leaky_history(database_url: str, home: Path, token: str) -> None:
    """A flow run in this process, recording into the server's store, whose parameters,
    logs, printed lines and failure message all hold the secret (plait masks it, as this
    process loaded the block that holds it)."""
    import os

    from plait import flow, get_run_logger, task

    saved = {k: os.environ.get(k) for k in ("PLAIT_HOME", "PLAIT_DATABASE_URL")}
    reset_state()
    os.environ.update(PLAIT_HOME=str(home), PLAIT_DATABASE_URL=database_url)
    try:
        @task
        def use_token(value: str) -> str:
            from plait.artifacts import create_markdown_artifact, create_table_artifact

            get_run_logger().info("calling the service with token %s", value)
            print(f"token={value}")
            create_markdown_artifact(f"# Call\nused token {value}", key="leaky-report", description=f"token {value}")
            create_table_artifact([{"token": value}], key="leaky-table")
            return value

        @flow(name="leaky", log_prints=True)
        def leaky(value: str) -> None:
            use_token(value)
            raise RuntimeError(f"the service refused token {value}")

        with pytest.raises(RuntimeError):
            leaky(token)
    finally:
        reset_state()  # flushes this process's records into the store
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("canary-server")
    url = f"sqlite:///{home / 'plait.db'}"
    with running_server(url, home) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        def put(slug: str, name: str, block: Block) -> None:
            response = client.put(f"/api/v1/blocks/documents/{slug}/{name}", json=block_payload(block),
                                  headers=server.headers("run"))
            assert response.status_code == 201, response.text

        from plait_blocks import Webhook

        put("canary-credentials", "prod", CanaryCredentials(user="robot", token=SecretStr(CANARY)))
        put("canary-vault", "prod", CanaryVault(label="vault", credentials=CanaryCredentials(user="x", token=CANARY)))
        put("webhook", "canary-hook", Webhook(url=f"https://hooks.example.com/{CANARY}",
                                              headers={"Authorization": f"Bearer {CANARY}"}))
        rule = client.post("/api/v1/notification-rules", headers=server.headers("admin"),
                           json={"block": "webhook/canary-hook", "name": "canary-rule", "flow_name": "never-*"})
        assert rule.status_code == 201, rule.text
        pool = client.post("/api/v1/work-pools", headers=server.headers("run"), json={"name": "walk-pool"})
        assert pool.status_code == 201, pool.text
        deployment = client.post("/api/v1/deployments", headers=server.headers("run"), json={
            "flow_name": "canary-flow", "name": "walk", "entrypoint": "/srv/flows/canary.py:flow",
            "work_pool_name": "walk-pool", "work_queue_name": "default", "parameters": {"n": 1},
            "schedules": [{"kind": "interval", "interval_seconds": 3600}]})
        assert deployment.status_code == 200, deployment.text
        waiting = client.post("/api/v1/deployments/canary-flow%2Fwalk/runs", headers=server.headers("run"),
                              json={"parameters": {"n": 2}})
        assert waiting.status_code == 201, waiting.text
        worker = client.post("/api/v1/work-pools/walk-pool/workers/heartbeat", headers=server.headers("run"),
                             json={"name": "walk-worker", "hostname": "h", "pid": 1, "heartbeat_interval": 30})
        assert worker.status_code == 200, worker.text
        # a concurrency limit whose description and a holder's label hold the secret
        limit = client.put("/api/v1/concurrency-limits/walk-limit", headers=server.headers("run"),
                           json={"limit": 5, "description": f"guards {CANARY}"})
        assert limit.status_code == 200, limit.text
        held = client.post("/api/v1/concurrency-limits/acquire", headers=server.headers("run"), json={
            "names": ["walk-limit"], "hostname": "h", "pid": 1, "label": f"held with {CANARY}"})
        assert held.status_code == 200 and held.json()["acquired"], held.text

        # this process loads the block through the API (its secret is now masked here too) ...
        revealed = client.get("/api/v1/blocks/documents/canary-credentials/prod", headers=server.headers("run"),
                              params={"include_secrets": "true"})
        loaded = block_from_document(revealed.json(), CanaryCredentials)
        # ... and runs a flow that tries to leak it into the history
        _leaky_history(url, tmp_path_factory.mktemp("canary-client"), loaded.token.get_secret_value())

        runs = client.get("/api/v1/flow-runs", headers=server.headers("read"), params={"flow": "leaky"}).json()
        flow_run_id = runs["items"][0]["id"]
        full = client.get(f"/api/v1/flow-runs/{flow_run_id}", headers=server.headers("read")).json()
        logs = client.get("/api/v1/logs", headers=server.headers("read"),
                          params={"flow_run": flow_run_id, "level": "DEBUG"}).json()["items"]
        assert logs, "the leaky flow run logged nothing"
        yield World(server, client, flow_run_id, full["task_runs"][0]["id"], [int(line["id"]) for line in logs],
                    waiting.json()["id"], worker.json()["worker_id"], home / "plait.db")


# -- how to call each route -------------------------------------------------------------------------------
@dataclass
class Call:
    """One request of the walk. ``path``/``params``/``json`` may be functions of the world
    (resolved when the call is made, so a DELETE can use what a POST made)."""

    key: str | None = "admin"
    path: dict[str, Any] | Callable[[World], dict[str, Any]] = field(default_factory=dict)
    params: dict[str, Any] | Callable[[World], dict[str, Any]] = field(default_factory=dict)
    json: Any = None
    status: int = 200
    reveals: bool = False  # the one answer allowed to hold the secret
    after: Callable[[World, httpx.Response], None] | None = None


def _fr(w: World) -> dict[str, Any]:
    return {"id": w.flow_run_id}


def _log_batch(w: World, message: str) -> dict[str, Any]:
    return {"batch_id": f"walk-{uuid.uuid4().hex}", "rows": {"logs": [{
        "flow_run_id": w.flow_run_id, "task_run_id": None, "level": 20, "logger": "walk", "message": message,
        "timestamp": int(time.time() * 1_000_000),
    }]}}


def _copy_payload() -> dict[str, Any]:
    return block_payload(CanaryCredentials(user="copy", token=CANARY))


def _remember(name: str, key: str = "id") -> Callable[[World, httpx.Response], None]:
    def keep(w: World, response: httpx.Response) -> None:
        w.made[name] = response.json()[key]
    return keep


BLOCK = {"slug": "canary-credentials", "name": "prod"}
VAULT = {"slug": "canary-vault", "name": "prod"}
COPY = {"slug": "canary-credentials", "name": "walk-copy"}

# (method, path as in the OpenAPI document) -> the calls that exercise it
CALLS: dict[tuple[str, str], list[Call]] = {
    ("GET", "/api/v1/health"): [Call(key=None)],
    ("GET", "/api/v1/flow-runs"): [Call(), Call(params={"flow": "leaky", "state": "failed"})],
    ("GET", "/api/v1/flow-runs/{id}"): [Call(path=_fr)],
    ("GET", "/api/v1/flow-runs/{id}/state"): [Call(path=_fr)],
    ("GET", "/api/v1/flow-runs/{id}/logs"): [Call(path=_fr)],
    ("GET", "/api/v1/flow-runs/{id}/graph"): [Call(path=_fr)],
    ("GET", "/api/v1/flow-runs/summary"): [Call(), Call(params={"flow": "leaky", "state": "failed", "buckets": 3})],
    ("GET", "/api/v1/task-runs"): [Call(), Call(params=lambda w: {"flow_run": w.flow_run_id})],
    ("GET", "/api/v1/task-runs/{id}"): [Call(path=lambda w: {"id": w.task_run_id})],
    ("GET", "/api/v1/logs"): [Call(), Call(params=lambda w: {"flow_run": w.flow_run_id, "level": "DEBUG"}),
                              Call(params=lambda w: {"task_run": w.task_run_id})],
    ("GET", "/api/v1/logs/{id}"): [Call(path=lambda w, i=i: {"id": w.log_ids[i]}) for i in range(3)],
    ("GET", "/api/v1/results"): [Call(), Call(params=lambda w: {"task_run": w.task_run_id})],
    ("POST", "/api/v1/records"): [Call(key="run", json=lambda w: _log_batch(w, "a walk line"))],
    ("POST", "/api/v1/records/replay"): [Call(key="run", json=lambda w: _log_batch(w, "a replayed line"))],
    ("PUT", "/api/v1/records/pauses/{id}"): [
        # the walk's run is not Paused: recording a pause for it changes nothing
        Call(key="run", path=_fr, json={"input_schema": None, "deadline": "2030-01-01T00:00:00Z"}),
        Call(key="read", path=_fr, json={"input_schema": None, "deadline": "2030-01-01T00:00:00Z"}, status=403),
    ],
    ("GET", "/api/v1/records/pauses/{id}"): [
        Call(key="run", path=_fr),
        Call(key="run", path={"id": "00000000-0000-4000-8000-000000000000"}, status=404),
    ],
    ("GET", "/api/v1/events"): [Call(params={"after": 0, "limit": 1000})],
    ("GET", "/api/v1/events/stream"): [Call(params={"after": 0, "timeout": 1})],
    ("GET", "/api/v1/blocks/types"): [Call()],
    ("GET", "/api/v1/blocks/types/{slug}"): [Call(path={"slug": "canary-credentials"}),
                                             Call(path={"slug": "canary-vault"}), Call(path={"slug": "webhook"})],
    ("GET", "/api/v1/blocks/documents"): [Call(), Call(params={"include_anonymous": "true"})],
    ("GET", "/api/v1/blocks/documents/{slug}/{name}"): [
        Call(key="read", path=BLOCK), Call(path=VAULT), Call(path={"slug": "webhook", "name": "canary-hook"}),
        Call(key="read", path=BLOCK, params={"include_secrets": "true"}, status=403),
        Call(key="run", path=BLOCK, params={"include_secrets": "true"}, reveals=True),
        Call(key="run", path=VAULT, params={"include_secrets": "true"}, reveals=True),
    ],
    ("PUT", "/api/v1/blocks/documents/{slug}/{name}"): [
        Call(key="run", path=COPY, json=lambda w: _copy_payload(), status=201),
        Call(key="run", path=COPY, json=lambda w: _copy_payload(), params={"overwrite": "true"}),
        Call(key="run", path=COPY, json=lambda w: _copy_payload(), status=409),
        Call(key="run", path={"slug": "canary-credentials", "name": "Bad Name"}, json=lambda w: _copy_payload(),
             status=422),
    ],
    ("POST", "/api/v1/blocks/apply"): [
        Call(key="run", json=lambda w: {"blocks": [{**_copy_payload(), "name": "walk-applied"}]}),
        Call(key="run", json=lambda w: {"blocks": [{**_copy_payload(), "name": "Bad Name"}]}, status=422),
        Call(key="read", json=lambda w: {"blocks": [{**_copy_payload(), "name": "walk-applied"}]}, status=403),
    ],
    ("DELETE", "/api/v1/blocks/documents/{slug}/{name}"): [Call(path=COPY), Call(path=COPY, status=404)],
    ("GET", "/api/v1/notification-rules"): [Call()],
    ("POST", "/api/v1/notification-rules"): [
        Call(json={"block": "webhook/canary-hook", "name": "walk-rule", "flow_name": "never-*"}, status=201,
             after=_remember("rule")),
    ],
    ("DELETE", "/api/v1/notification-rules/{rule_id}"): [Call(path=lambda w: {"rule_id": w.made["rule"]})],
    ("GET", "/api/v1/collections"): [Call()],
    ("GET", "/api/v1/plugins"): [Call(), Call(params={"load": "true"})],
}
DEPLOYMENT = {"ref": "canary-flow/walk"}
POOL = {"name": "walk-pool"}


def _spec() -> dict[str, Any]:
    return {"flow_name": "canary-flow", "name": "walk", "entrypoint": "/srv/flows/canary.py:flow",
            "work_pool_name": "walk-pool", "work_queue_name": "default", "parameters": {"n": 3}}


CONTROL_CALLS: dict[tuple[str, str], list[Call]] = {
    ("GET", "/api/v1/deployments"): [Call(), Call(params={"work_pool": "walk-pool"})],
    ("GET", "/api/v1/deployments/{ref}"): [Call(key="read", path=DEPLOYMENT),
                                           Call(path={"ref": "canary-flow/none"}, status=404)],
    ("POST", "/api/v1/deployments"): [Call(key="run", json=lambda w: _spec())],
    ("POST", "/api/v1/deployments/{ref}/claim"): [Call(key="run", path=DEPLOYMENT, json={"runner_id": "walk"})],
    ("POST", "/api/v1/deployments/{ref}/pause"): [Call(key="run", path=DEPLOYMENT)],
    ("POST", "/api/v1/deployments/{ref}/resume"): [Call(key="run", path=DEPLOYMENT)],
    ("POST", "/api/v1/deployments/{ref}/runs"): [Call(key="run", path=DEPLOYMENT, json={"parameters": {"n": 4}},
                                                      status=201, after=_remember("walk_run"))],
    ("DELETE", "/api/v1/deployments/{ref}"): [Call(path=DEPLOYMENT), Call(path=DEPLOYMENT, status=404)],
    ("GET", "/api/v1/work-pools"): [Call()],
    ("GET", "/api/v1/work-pools/{name}"): [Call(key="read", path=POOL)],
    ("POST", "/api/v1/work-pools"): [Call(key="run", json={"name": "walk-pool-2"}, status=201),
                                     Call(key="run", json={"name": "walk-pool-2"}, status=409)],
    ("PATCH", "/api/v1/work-pools/{name}"): [Call(key="run", path=POOL, json={"description": "walked"})],
    ("POST", "/api/v1/work-pools/{name}/pause"): [Call(key="run", path=POOL)],
    ("POST", "/api/v1/work-pools/{name}/resume"): [Call(key="run", path=POOL)],
    ("PUT", "/api/v1/work-pools/{name}/queues/{queue}"): [
        Call(key="run", path={"name": "walk-pool", "queue": "high"}, json={"priority": 1})],
    ("POST", "/api/v1/work-pools/{name}/workers/heartbeat"): [
        Call(key="run", path=POOL, json={"name": "walk-worker", "hostname": "h", "pid": 1})],
    ("POST", "/api/v1/work-pools/{name}/claim"): [
        Call(key="run", path=POOL, json=lambda w: {"worker_id": w.worker_id, "limit": 5}),
        Call(key="read", path=POOL, json=lambda w: {"worker_id": w.worker_id}, status=403)],
    ("DELETE", "/api/v1/work-pools/{name}"): [Call(path={"name": "walk-pool-2"}),
                                              Call(path={"name": "walk-pool-2"}, status=404)],
    ("GET", "/api/v1/flow-runs/{id}/late-reason"): [Call(key="read", path=lambda w: {"id": w.scheduled_run_id})],
    ("POST", "/api/v1/flow-runs/{id}/cancel"): [Call(key="run", path=lambda w: {"id": w.made["walk_run"]}),
                                                Call(key="run", path=lambda w: {"id": w.made["walk_run"]},
                                                     status=409)],
    # the walked run was cancelled: a worker's later verdict does not replace that
    ("POST", "/api/v1/flow-runs/{id}/end"): [
        Call(key="run", path=lambda w: {"id": w.made["walk_run"]}, json={"state_type": "CRASHED", "message": "gone"}),
        Call(key="read", path=lambda w: {"id": w.made["walk_run"]}, json={"state_type": "CRASHED", "message": "x"},
             status=403)],
    # the leaky run has failed: it is not paused (409), and the input (holding the secret) is never echoed
    ("POST", "/api/v1/flow-runs/{id}/resume"): [Call(key="run", path=_fr, json={"input": {"token": CANARY}},
                                                     status=409)],
    # a cancelled run cannot be retried (the leaky run stays Failed for the tests below)
    ("POST", "/api/v1/flow-runs/{id}/retry"): [Call(key="run", path=lambda w: {"id": w.made["walk_run"]},
                                                    status=409)],
}
CALLS.update(CONTROL_CALLS)
LIMIT = {"name": "walk-limit"}
LIMIT_2 = {"name": "walk/limit-2"}  # a "/" in a name, as tags may hold one


def _remember_slot(w: World, response: httpx.Response) -> None:
    w.made["slot"] = response.json()["slot_ids"][0]


CONCURRENCY_CALLS: dict[tuple[str, str], list[Call]] = {
    ("GET", "/api/v1/concurrency-limits"): [Call(key="read")],
    ("GET", "/api/v1/concurrency-limits/{name}"): [Call(key="read", path=LIMIT),
                                                   Call(path={"name": "walk-none"}, status=404)],
    ("POST", "/api/v1/concurrency-limits/acquire"): [
        Call(key="run", json={"names": ["walk-limit", "walk-no-limit"], "hostname": "h", "pid": 2,
                              "label": f"walk {CANARY}"}, after=_remember_slot),
        Call(key="run", json={"names": ["walk-limit"], "occupy": 6, "hostname": "h"}, status=422),
        Call(key="read", json={"names": ["walk-limit"], "hostname": "h"}, status=403)],
    ("POST", "/api/v1/concurrency-limits/release"): [
        Call(key="run", json=lambda w: {"slot_ids": [w.made["slot"], "00000000-0000-4000-8000-000000000000"]}),
        Call(key="read", json={"slot_ids": []}, status=403)],
    ("POST", "/api/v1/concurrency-limits/{name}/reset"): [Call(key="run", path=LIMIT),
                                                          Call(key="run", path={"name": "walk-none"}, status=404)],
    ("PUT", "/api/v1/concurrency-limits/{name}"): [
        Call(key="run", path=LIMIT_2, json={"limit": 2, "slot_decay_per_second": 0.5, "description": CANARY}),
        Call(key="run", path=LIMIT_2, json={"limit": -1}, status=422),
        Call(key="read", path=LIMIT_2, json={"limit": 2}, status=403)],
    ("DELETE", "/api/v1/concurrency-limits/{name}"): [Call(key="run", path=LIMIT_2, status=403), Call(path=LIMIT_2),
                                                      Call(path=LIMIT_2, status=404)],
}
CALLS.update(CONCURRENCY_CALLS)

# For tests/test_server_canary.py: add after `CALLS.update(CONCURRENCY_CALLS)` (H2's routes).
# The walk runs GETs before POSTs, so the GETs of one automation use the fixture's notification
# rule "canary-rule" (listed as a read-only automation); the POSTs make "walk-automation",
# whose description holds the secret (masked before it is stored), as do an event's payload
# and labels. Not its actions: those are stored as written (the evaluator sends a webhook
# call's header as given) and only masked in answers (tests/test_server_automations.py).
WALK_AUTOMATION = {"key": "walk-automation"}
RULE_AUTOMATION = {"key": "canary-rule"}


def _automation() -> dict[str, Any]:
    return {"name": "walk-automation", "description": f"guards {CANARY}",
            "trigger": {"expect": ["walk.never-happens"]},
            "actions": [{"type": "pause-work-pool", "work_pool": "walk-none"}]}


AUTOMATION_CALLS: dict[tuple[str, str], list[Call]] = {
    ("GET", "/api/v1/automations"): [Call(key="read")],
    ("GET", "/api/v1/automations/{key}"): [Call(key="read", path=RULE_AUTOMATION),
                                           Call(key="read", path={"key": "walk-none"}, status=404)],
    ("GET", "/api/v1/automations/{key}/actions"): [Call(key="read", path=RULE_AUTOMATION),
                                                   Call(key="read", path={"key": "walk-none"}, status=404)],
    ("POST", "/api/v1/automations"): [
        Call(json=lambda w: _automation(), status=201), Call(json=lambda w: _automation()),  # then unchanged
        Call(json={"name": "walk-bad", "trigger": {"within": "soon"}, "actions": []}, status=422),
        Call(key="run", json=lambda w: _automation(), status=403)],
    ("POST", "/api/v1/automations/{key}/disable"): [Call(path=WALK_AUTOMATION),
                                                    Call(path=RULE_AUTOMATION, status=409)],
    ("POST", "/api/v1/automations/{key}/enable"): [Call(path=WALK_AUTOMATION)],
    ("DELETE", "/api/v1/automations/{key}"): [Call(path=RULE_AUTOMATION, status=409), Call(path=WALK_AUTOMATION),
                                              Call(path=WALK_AUTOMATION, status=404)],
    ("POST", "/api/v1/events"): [
        Call(key="run", status=201, json={"event": "walk.happened", "resource": {"id": "walk", "token": CANARY},
                                          "payload": {"said": f"token {CANARY}"}}),
        Call(key="run", json={"event": "flow-run.state-changed", "resource": {"id": "flow-run/x"}}, status=400),
        Call(key="read", json={"event": "walk.happened", "resource": {"id": "walk"}}, status=403)],
}
CALLS.update(AUTOMATION_CALLS)

# Webhooks: made, rotated, then called by the receiver route with the webhook's own token (no
# API key) and a body that holds the secret (masked in the event it becomes).
WALK_HOOK = {"name": "walk-hook"}


def _remember_hook(w: World, response: httpx.Response) -> None:
    answer = response.json()
    w.made["hook_slug"] = answer["webhook"]["slug"]
    w.made["hook_token"] = answer["token"]


WEBHOOK_CALLS: dict[tuple[str, str], list[Call]] = {
    ("GET", "/api/v1/webhooks"): [Call(key="read")],
    ("GET", "/api/v1/webhooks/by-name/{name}"): [Call(key="read", path={"name": "walk-none"}, status=404)],
    ("POST", "/api/v1/webhooks"): [
        Call(json={"name": "walk-hook", "description": f"for {CANARY}"}, status=201, after=_remember_hook),
        Call(json={"name": "walk-hook"}, status=409),
        Call(json={"name": "walk-bad-hook", "template": "{{ body."}, status=400),
        Call(key="run", json={"name": "walk-hook-2"}, status=403)],
    ("POST", "/api/v1/webhooks/by-name/{name}/rotate"): [
        Call(path=WALK_HOOK, after=_remember_hook), Call(path={"name": "walk-none"}, status=404)],
    ("POST", "/api/v1/webhooks/{slug}"): [
        Call(key=None, path=lambda w: {"slug": w.made["hook_slug"]}, params=lambda w: {"token": w.made["hook_token"]},
             json={"said": f"token {CANARY}"}, status=202),
        Call(key=None, path=lambda w: {"slug": w.made["hook_slug"]}, params={"token": "wrong"}, json={}, status=401),
        Call(key=None, path={"slug": "walk-no-such-hook"}, json={}, status=404)],
    ("PATCH", "/api/v1/webhooks/by-name/{name}"): [
        Call(path=WALK_HOOK, json={"description": "changed"}), Call(key="read", path=WALK_HOOK, json={}, status=403)],
    ("DELETE", "/api/v1/webhooks/by-name/{name}"): [Call(path=WALK_HOOK), Call(path=WALK_HOOK, status=404)],
}
CALLS.update(WEBHOOK_CALLS)
WALK_VAR = {"name": "walk-var"}
VARIABLE_CALLS: dict[tuple[str, str], list[Call]] = {
    ("GET", "/api/v1/variables"): [Call(key="read")],
    ("GET", "/api/v1/variables/by-name/{name}"): [Call(key="read", path={"name": "walk-none"}, status=404)],
    ("PUT", "/api/v1/variables/by-name/{name}"): [
        Call(key="run", path=WALK_VAR, json={"value": {"schema": "walk"}, "tags": ["walk"]}),
        Call(key="run", path=WALK_VAR, json={"value": 2}, status=409),
        Call(key="read", path=WALK_VAR, json={"value": 2, "overwrite": True}, status=403)],
    ("DELETE", "/api/v1/variables/by-name/{name}"): [
        Call(key="run", path=WALK_VAR), Call(key="run", path=WALK_VAR, status=404)],
}
CALLS.update(VARIABLE_CALLS)
ARTIFACT_CALLS: dict[tuple[str, str], list[Call]] = {
    ("GET", "/api/v1/artifacts"): [Call(key="read"), Call(key="read", params=lambda w: {"flow_run": w.flow_run_id}),
                                   Call(key="read", params={"key": "leaky-report"},
                                        after=_remember("artifact", "items"))],
    ("GET", "/api/v1/artifacts/{id}"): [
        Call(key="read", path=lambda w: {"id": w.made["artifact"][0]["id"]}),
        Call(key="read", path={"id": "00000000-0000-0000-0000-000000000000"}, status=404)],
    ("GET", "/api/v1/artifacts/key/{key}"): [
        Call(key="read", path={"key": "leaky-table"}), Call(key="read", path={"key": "walk-none"}, status=404)],
    ("GET", "/api/v1/history/export"): [Call(key="read"), Call(key="read", params={"since": 0, "limit": 5})],
}
CALLS.update(ARTIFACT_CALLS)
_ORDER = {"GET": 0, "POST": 1, "PUT": 2, "PATCH": 3, "DELETE": 4}


def _value(value: Any, w: World) -> Any:
    return value(w) if callable(value) else value


def _operations(document: dict[str, Any]) -> list[tuple[str, str]]:
    found = [(method.upper(), path) for path, item in document["paths"].items() for method in item
             if method.upper() in _ORDER]
    return sorted(found, key=lambda op: (_ORDER[op[0]], op[1]))


def _leaks(response: httpx.Response) -> list[str]:
    where = [f"header {name}" for name, value in response.headers.items() if CANARY in value or CANARY in name]
    if CANARY in response.text:
        where.append("body")
    return where


# -- the walk --------------------------------------------------------------------------------------------
def test_every_route_is_walked_and_the_secret_leaks_nowhere(world: World) -> None:
    document = world.client.get("/api/v1/openapi.json").json()
    assert CANARY not in str(document)
    operations = _operations(document)
    untaught = [f"{m} {p}" for m, p in operations if (m, p) not in CALLS]
    assert not untaught, (
        "the canary walk does not know how to call these routes; teach it (CALLS in tests/test_server_canary.py): "
        + ", ".join(untaught)
    )
    stale = [f"{m} {p}" for m, p in CALLS if (m, p) not in operations]
    assert not stale, f"CALLS names routes the API no longer has: {stale}"

    leaks, wrong, revealed = [], [], 0
    for method, template in operations:
        for call in CALLS[(method, template)]:
            path = template.format(**_value(call.path, world))
            response = world.client.request(
                method, path, params=_value(call.params, world), json=_value(call.json, world),
                headers=world.headers(call.key),
            )
            label = f"{method} {path} {_value(call.params, world) or ''} (key {call.key})"
            if response.status_code != call.status:
                wrong.append(f"{label}: {response.status_code}, expected {call.status}: {response.text[:300]}")
            found = _leaks(response)
            if call.reveals:
                assert found == ["body"], f"{label} should answer the secret (and only in its body): {found}"
                revealed += 1
            elif found:
                leaks.append(f"{label}: the secret is in its {', '.join(found)}")
            if call.after is not None and response.is_success:
                call.after(world, response)
    assert not leaks, "the secret leaked:\n" + "\n".join(leaks)
    assert not wrong, "unexpected answers:\n" + "\n".join(wrong)
    assert revealed == 2


def test_the_history_holds_the_runs_with_the_secret_masked(world: World) -> None:
    # the walk is only as good as the history it reads: the run, its task, logs and failure are there
    run = world.client.get(f"/api/v1/flow-runs/{world.flow_run_id}", headers=world.headers("read")).json()
    assert run["state_type"] == "FAILED"
    assert run["parameters"] == {"value": "***"}
    assert any("the service refused token ***" in (s.get("message") or "") for s in run["states"])
    logs = world.client.get("/api/v1/logs", headers=world.headers("read"),
                            params={"flow_run": world.flow_run_id, "level": "DEBUG"}).json()["items"]
    messages = [str(line["message"]) for line in logs]
    assert any("calling the service with token ***" in m for m in messages), messages
    assert any("token=***" in m for m in messages), messages
    # and the store itself holds the secret nowhere in plain text (blocks encrypted, history masked)
    for path in world.database.parent.glob(world.database.name + "*"):  # the file, its -wal and -shm
        assert CANARY.encode() not in path.read_bytes(), path


def test_a_secret_the_server_knows_is_masked_in_records_a_careless_client_sends(world: World) -> None:
    # a client that never loaded the block sends the secret in a log line: the server saw the
    # secret when the block was saved through it, so it never answers it back
    sent = world.client.post("/api/v1/records", headers=world.headers("run"),
                             json=_log_batch(world, f"careless client logged {CANARY}"))
    assert sent.status_code == 200, sent.text
    for path, params in (("/api/v1/logs", {"flow_run": world.flow_run_id, "limit": 1000}),
                         (f"/api/v1/flow-runs/{world.flow_run_id}/logs", {"limit": 1000}),
                         ("/api/v1/events", {"after": 0, "limit": 1000})):
        response = world.client.get(path, headers=world.headers("admin"), params=params)
        assert response.status_code == 200 and not _leaks(response), f"{path}: {_leaks(response)}"


def test_the_server_log_never_holds_the_secret(world: World) -> None:
    # the walk and the requests above all ran by now (module order); error paths included
    world.client.get("/api/v1/blocks/documents/canary-credentials/prod", headers={"Authorization": f"Bearer {CANARY}"})
    world.client.put("/api/v1/blocks/documents/canary-credentials/x", headers=world.headers("run"),
                     content=f'{{"data": "{CANARY}"'.encode())
    log = world.server.output()
    assert log.strip(), "the server wrote no log at all; is its output captured?"
    assert CANARY not in log
