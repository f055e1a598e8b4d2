"""plait.deployments: the Deployment model, parameters checked against the flow's signature,
code bundles, plait.yaml, run_deployment and backfill.

The model and the parameter checks are pure; everything that saves goes through the control
plane into a real store (SQLite and PostgreSQL, via ``plait_env``); bundles are written to a
real ``LocalFileSystem`` block; the waiting ``run_deployment`` is answered by a real worker
running the flow in a subprocess.
"""

from __future__ import annotations

import io
import textwrap
import threading
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from plait import flow, runtime
from plait.deployments import (
    BundleError,
    Deployment,
    DeploymentError,
    DeploymentNotFound,
    DeploymentsFileError,
    apply_file,
    backfill,
    bundle_bytes,
    deploy,
    deployment_from_flow,
    fetch_bundle,
    get_deployment,
    run_deployment,
    schema_problems,
    slot_key,
)
from plait.exceptions import ParameterBindError


class Cfg(BaseModel):
    rows: int = 10
    label: str = "x"


class Opaque:
    """A type pydantic has no JSON schema for."""


@flow(name="typed-etl")
def typed_etl(
    n: int,
    when: datetime | None = None,
    token: SecretStr | None = None,
    cfg: Cfg = Cfg(),  # noqa: B008 - a default the schema shows
    anything=None,
    blob: Opaque | None = None,
) -> int:
    return n


@flow
def odd_names(json: int = 1, model_config: str = "x", _private: bool = False, **extra: Any) -> None:
    return None


# -- Flow.parameters and Flow.check_parameters ---------------------------------------------------
def test_flow_parameters_is_the_json_schema_of_the_signature() -> None:
    schema = typed_etl.parameters
    assert schema["type"] == "object" and schema["title"] == "Parameters"
    assert schema["required"] == ["n"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert list(props) == ["n", "when", "token", "cfg", "anything", "blob"]
    assert props["n"]["type"] == "integer"
    assert {"format": "date-time", "type": "string"} in props["when"]["anyOf"]
    assert props["token"]["anyOf"][0]["writeOnly"] is True  # a secret: a password field in forms
    assert props["cfg"]["$ref"] == "#/$defs/Cfg" and props["cfg"]["default"] == {"rows": 10, "label": "x"}
    assert schema["$defs"]["Cfg"]["properties"]["rows"]["type"] == "integer"
    assert "type" not in props["anything"] and "type" not in props["blob"]  # any value


def test_parameter_names_pydantic_reserves_work_and_kwargs_allow_others() -> None:
    schema = odd_names.parameters
    assert list(schema["properties"]) == ["json", "model_config", "_private"]
    assert schema["additionalProperties"] is True
    assert odd_names.check_parameters({"json": "2", "other": [1]}) == {
        "json": 2, "model_config": "x", "_private": False, "other": [1],
    }


def test_an_unresolvable_annotation_takes_any_value_and_leaves_the_others_typed() -> None:
    class Local:  # a name get_type_hints cannot resolve from the module: annotations are text here
        pass

    @flow
    def local_types(n: int, thing: Local | None = None) -> None:
        return None

    props = local_types.parameters["properties"]
    assert props["n"]["type"] == "integer" and "type" not in props["thing"] and "anyOf" not in props["thing"]
    local_types.parameters["properties"].clear()  # a copy: the flow's schema stays whole
    assert "n" in local_types.parameters["properties"]


def test_check_parameters_converts_and_names_each_bad_parameter() -> None:
    checked = typed_etl.check_parameters({"n": "3", "when": "2024-06-01T03:00:00Z", "cfg": {"rows": 5}})
    assert checked["n"] == 3
    assert checked["when"] == datetime(2024, 6, 1, 3, tzinfo=UTC)
    assert checked["cfg"] == Cfg(rows=5)
    with pytest.raises(ParameterBindError) as caught:
        typed_etl.check_parameters({"n": "many", "nn": 1, "cfg": {"rows": "lots"}})
    message = str(caught.value)
    assert message.startswith("flow 'typed-etl': ")
    assert "parameter 'n': Input should be a valid integer" in message
    assert "unknown parameter 'nn' (did you mean 'n'?)" in message
    assert "parameter 'cfg.rows'" in message
    with pytest.raises(ParameterBindError, match="parameter 'n' is required"):
        typed_etl.check_parameters({})
    assert typed_etl.check_parameters({}, partial=True) == {}
    assert typed_etl.check_parameters({"when": None}, partial=True) == {"when": None}


def test_a_secret_parameter_never_shows_in_an_error() -> None:
    with pytest.raises(ParameterBindError) as caught:
        typed_etl.check_parameters({"n": 1, "token": 12345678987654321})
    assert "12345678987654321" not in str(caught.value) and "parameter 'token'" in str(caught.value)


# -- schema_problems: checks without the flow --------------------------------------------------------
def test_schema_problems_follow_the_stored_schema() -> None:
    schema = typed_etl.parameters
    assert schema_problems(schema, {"n": 1, "cfg": {"rows": 2}, "when": None}) == []
    assert schema_problems(schema, {"n": True}) == ["parameter 'n': must be an integer, got a boolean"]
    assert schema_problems(schema, {"n": 2.0}) == []  # JSON has no integer type of its own
    assert schema_problems(schema, {"cfg": {"rows": "x"}}, partial=True) == [
        "parameter 'cfg': field 'rows': must be an integer, got a string"
    ]
    assert schema_problems(schema, {"when": 5}, partial=True) == [
        "parameter 'when': must be a string, got an integer; or must be a null, got an integer"
    ]
    assert schema_problems(schema, {"x": 1}) == [
        "unknown parameter 'x' (it takes: n, when, token, cfg, anything, blob)", "parameter 'n' is required",
    ]
    assert schema_problems({}, {"anything": object()}) == []


# -- Deployment and deployment_from_flow ------------------------------------------------------------
def test_deployment_from_flow_finds_the_entrypoint_and_checks_everything() -> None:
    made = deployment_from_flow(
        typed_etl, "nightly", parameters={"n": 3}, cron="0 3 * * *", timezone="Europe/Paris", tags=["etl"],
    )
    assert made.full_name == "typed-etl/nightly"
    assert made.entrypoint == f"{Path(__file__).resolve()}:typed_etl"  # the attribute, not the flow's name
    assert made.path == str(Path.cwd())
    assert made.parameter_schema == typed_etl.parameters
    spec = made.to_spec()
    assert spec["schedules"] == [{"kind": "cron", "cron": "0 3 * * *", "interval_seconds": None, "anchor": None,
                                  "rrule": None, "timezone": "Europe/Paris", "active": True, "parameters": {}}]
    assert spec["work_pool_name"] is None and spec["work_queue_name"] is None and spec["paused"] is False

    pooled = deployment_from_flow(typed_etl, "hourly", work_pool="local", interval=timedelta(hours=1),
                                  anchor=datetime(2024, 1, 1, tzinfo=UTC), rrule="FREQ=DAILY;BYHOUR=9")
    assert pooled.to_spec()["work_queue_name"] == "default"
    kinds = [(s["kind"], s["interval_seconds"]) for s in pooled.to_spec()["schedules"]]
    assert kinds == [("interval", 3600.0), ("rrule", None)]


@pytest.mark.parametrize(("options", "error", "text"), [
    ({"parameters": {"nn": 1}}, ParameterBindError, "unknown parameter 'nn' (did you mean 'n'?)"),
    ({"parameters": {"n": "lots"}}, ParameterBindError, "parameter 'n': Input should be a valid integer"),
    ({"cron": "0 3 * *"}, DeploymentError, "schedule 1: cron: '0 3 * *' has 4 fields"),
    ({"schedules": [{"cron": "* * * * *", "interval": 60}]}, DeploymentError, "exactly one of cron, interval"),
    ({"schedules": [{"interval": 60, "parameters": {"nn": 2}}]}, ParameterBindError, "schedule 1: flow"),
    ({"timezone": "Mars/Base", "cron": "0 3 * * *"}, DeploymentError, "Mars/Base"),
    ({"work_queue": "fast"}, DeploymentError, "work_queue 'fast' is given without a work_pool"),
    ({"wrok_pool": "local"}, DeploymentError, "unknown deployment option(s): 'wrok_pool' (did you mean"),
    ({"collision_strategy": "drop"}, DeploymentError, "collision_strategy"),
    ({"storage_block": "nothing"}, DeploymentError, "'slug/name'"),
    ({"parameters": {"n": 1, "token": SecretStr("hunter2-secret")}}, DeploymentError, "'token' hold a secret"),
])
def test_deployment_from_flow_refuses_bad_options(options: dict[str, Any], error: type, text: str) -> None:
    with pytest.raises(error) as caught:
        deployment_from_flow(typed_etl, "bad", **options)
    assert text in str(caught.value)


def test_a_deployment_built_by_hand_is_checked_against_its_parameter_schema() -> None:
    base = {"name": "d", "flow_name": "typed-etl", "entrypoint": "flows.py:typed_etl",
            "parameter_schema": typed_etl.parameters}
    assert Deployment(**base, parameters={"n": 1}).parameters == {"n": 1}
    with pytest.raises(ValidationError, match="unknown parameter 'nn'"):
        Deployment(**base, parameters={"nn": 1})
    with pytest.raises(ValidationError, match="schedule 1: parameter 'n': must be an integer"):
        Deployment(**base, schedules=[{"interval": 60, "parameters": {"n": "x"}}])
    with pytest.raises(ValidationError, match="not a name"):
        Deployment(**{**base, "name": "a/b"})
    with pytest.raises(ValidationError, match="must look like 'path/to/file.py:flow'"):
        Deployment(**{**base, "entrypoint": "flows.py"})


# -- code bundles ---------------------------------------------------------------------------------
def _project(root: Path) -> Path:
    (root / "flows").mkdir(parents=True)
    (root / "flows" / "etl.py").write_text("from plait import flow\n\n@flow\ndef etl(n: int = 1):\n    return n\n")
    (root / "helpers.py").write_text("VALUE = 1\n")
    for skipped in (".venv/lib/site.py", "__pycache__/etl.cpython-312.pyc", ".git/HEAD", "data/big.csv",
                    "flows/debug.log", "flows/__pycache__/x.pyc"):
        (root / skipped).parent.mkdir(parents=True, exist_ok=True)
        (root / skipped).write_text("skip me")
    (root / ".plaitignore").write_text("# not code\ndata/\n*.log\n")
    return root


def _names(data: bytes) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(data)).namelist()


def test_bundle_holds_the_code_only_and_is_reproducible(tmp_path: Path) -> None:
    root = _project(tmp_path / "project")
    data, names = bundle_bytes(root)
    assert names == _names(data) == [".plaitignore", "flows/etl.py", "helpers.py"]
    assert bundle_bytes(root)[0] == data  # same files, same bytes
    (root / "helpers.py").write_text("VALUE = 2\n")
    assert bundle_bytes(root)[0] != data


@pytest.fixture
def storage(plait_env: str, tmp_path: Path) -> Path:
    """A saved LocalFileSystem block ``local-file-system/code``; yields its directory."""
    from plait.blocks import get_block_class

    where = tmp_path / "bucket"
    get_block_class("local-file-system")(basepath=str(where)).save("code")
    return where


def test_upload_bundle_writes_through_the_storage_block_and_fetch_unpacks_it(storage: Path, tmp_path: Path) -> None:
    root = _project(tmp_path / "project")
    made = deployment_from_flow(typed_etl, "bundled", entrypoint=f"{root / 'flows' / 'etl.py'}:etl", path=root,
                                storage_block="local-file-system/code")
    key = made.upload_bundle()
    assert key.startswith("plait-bundles/typed-etl/bundled/") and key.endswith(".zip")
    assert made.entrypoint == "flows/etl.py:etl" and made.path is None and made.bundle_key == key
    assert _names((storage / key).read_bytes()) == [".plaitignore", "flows/etl.py", "helpers.py"]
    again = deployment_from_flow(typed_etl, "bundled", entrypoint=f"{root / 'flows' / 'etl.py'}:etl", path=root,
                                 storage_block="local-file-system/code")
    assert again.upload_bundle() == key  # unchanged code, unchanged key

    out = fetch_bundle("local-file-system/code", key, tmp_path / "unpacked")
    assert (out / "flows" / "etl.py").read_text() == (root / "flows" / "etl.py").read_text()
    assert not (out / "data").exists() and not (out / ".venv").exists()

    (storage / key).write_bytes((storage / key).read_bytes() + b"tampered")
    with pytest.raises(BundleError, match="does not match its hash"):
        fetch_bundle("local-file-system/code", key, tmp_path / "again")
    deployment_from_flow(typed_etl, "bundled", entrypoint=f"{root / 'flows' / 'etl.py'}:etl", path=root,
                         storage_block="local-file-system/code").upload_bundle()  # deploying again repairs it
    assert (fetch_bundle("local-file-system/code", key, tmp_path / "again") / "helpers.py").is_file()


def test_fetch_bundle_refuses_entries_that_leave_the_directory(storage: Path, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../escape.py", "print('out')")
    (storage / "evil.zip").parent.mkdir(parents=True, exist_ok=True)
    (storage / "evil.zip").write_bytes(buffer.getvalue())
    with pytest.raises(BundleError, match="leaves the directory"):
        fetch_bundle("local-file-system/code", "evil.zip", tmp_path / "target")
    assert not (tmp_path / "escape.py").exists()


def test_a_bundle_refuses_an_entrypoint_outside_the_project(storage: Path, tmp_path: Path) -> None:
    root = _project(tmp_path / "project")
    made = deployment_from_flow(typed_etl, "outside", path=root, storage_block="local-file-system/code")
    with pytest.raises(BundleError, match="outside the project"):
        made.upload_bundle()  # the entrypoint is this test file


# -- saving: plait.yaml, deploy() --------------------------------------------------------------------
FLOW_FILE = """\
from plait import flow


@flow(name="yaml-etl")
def etl(days: int = 1, label: str = "daily") -> str:
    return f"{label}:{days}"
"""


@pytest.fixture
def project(plait_env: str, tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "flows").mkdir(parents=True)
    (root / "flows" / "etl.py").write_text(FLOW_FILE)
    return root


def _write(root: Path, text: str) -> Path:
    path = root / "plait.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _pool(name: str = "local") -> None:
    from plait.deployments._control import control_plane

    if control_plane().get_work_pool(name) is None:
        control_plane().create_work_pool(name, "process")


YAML = """\
deployments:
  - name: nightly
    entrypoint: flows/etl.py:etl
    work_pool: local
    parameters: {days: 2}
    schedules:
      - cron: "0 3 * * *"
        timezone: Europe/Paris
      - interval: 3600
        active: false
        parameters: {label: hourly}
  - name: adhoc
    entrypoint: flows/etl.py:etl
"""


def test_apply_file_is_idempotent_and_reports_each_outcome(project: Path) -> None:
    _pool()
    path = _write(project, YAML)
    assert apply_file(path) == [("yaml-etl/nightly", "created"), ("yaml-etl/adhoc", "created")]
    assert apply_file(path) == [("yaml-etl/nightly", "unchanged"), ("yaml-etl/adhoc", "unchanged")]
    saved = get_deployment("yaml-etl/nightly")
    assert saved["entrypoint"] == "flows/etl.py:etl" and saved["path"] == str(project.resolve())
    assert saved["parameters"] == {"days": 2} and saved["work_pool_name"] == "local"
    assert [(s["kind"], s["timezone"], s["active"], s["parameters"]) for s in saved["schedules"]] == [
        ("cron", "Europe/Paris", True, {}), ("interval", "UTC", False, {"label": "hourly"}),
    ]
    _write(project, YAML.replace("{days: 2}", "{days: 3}"))
    assert apply_file(path)[0] == ("yaml-etl/nightly", "updated")
    assert get_deployment("yaml-etl/nightly")["parameters"] == {"days": 3}


def test_an_empty_schedule_list_clears_schedules_and_a_missing_key_keeps_them(project: Path) -> None:
    _pool()
    path = _write(project, YAML)
    apply_file(path)
    without_key = YAML.replace(YAML[YAML.index("    schedules:"):YAML.index("  - name: adhoc")], "")
    _write(project, without_key)
    assert apply_file(path)[0] == ("yaml-etl/nightly", "unchanged")
    assert len(get_deployment("yaml-etl/nightly")["schedules"]) == 2
    _write(project, without_key.replace("    parameters: {days: 2}\n", "    parameters: {days: 2}\n    schedules: []\n"))
    assert apply_file(path)[0] == ("yaml-etl/nightly", "updated")
    assert get_deployment("yaml-etl/nightly")["schedules"] == []


def test_a_module_entrypoint_is_imported_from_the_deployments_path(project: Path) -> None:
    package = project / "deploy_mod_jobs"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nightly.py").write_text(FLOW_FILE.replace("yaml-etl", "module-etl"))
    path = _write(project, "deployments:\n  - {name: mod, entrypoint: 'deploy_mod_jobs.nightly:etl'}\n")
    assert apply_file(path) == [("module-etl/mod", "created")]
    saved = get_deployment("module-etl/mod")
    assert saved["entrypoint"] == "deploy_mod_jobs.nightly:etl" and saved["path"] == str(project.resolve())
    assert saved["work_pool_name"] is None  # a serve process runs it
    assert saved["parameter_schema"]["properties"]["days"]["type"] == "integer"
    # another project with a module of the same name: its own module is the one imported
    other = project.parent / "other"
    (other / "deploy_mod_jobs").mkdir(parents=True)
    (other / "deploy_mod_jobs" / "__init__.py").write_text("")
    (other / "deploy_mod_jobs" / "nightly.py").write_text(FLOW_FILE.replace("yaml-etl", "other-etl"))
    assert apply_file(_write(other, "deployments:\n  - {name: mod, entrypoint: 'deploy_mod_jobs.nightly:etl'}\n")) \
        == [("other-etl/mod", "created")]


def test_a_paused_deployment_stays_paused_when_the_file_does_not_say(project: Path) -> None:
    from plait.deployments._control import control_plane

    _pool()
    path = _write(project, YAML)
    apply_file(path)
    control_plane().set_deployment_paused("yaml-etl/adhoc", True)
    assert apply_file(path)[1] == ("yaml-etl/adhoc", "unchanged")
    assert get_deployment("yaml-etl/adhoc")["paused"] is True


@pytest.mark.parametrize(("text", "message"), [
    ("deployments:\n  - name: a\n    entrypoint: flows/etl.py:etl\n    work_pol: local\n",
     "deployment 1: unknown key(s) 'work_pol' (did you mean 'work_pool'?)"),
    ("deployments:\n  - name: a\n    entrypoint: flows/etl.py:etl\n    parameters: {dayz: 1}\n",
     "deployment 'a': flow 'yaml-etl': unknown parameter 'dayz' (did you mean 'days'?)"),
    ("deployments:\n  - name: a\n    entrypoint: flows/etl.py:etl\n    parameters: {days: many}\n",
     "deployment 'a': flow 'yaml-etl': parameter 'days'"),
    ("deployments:\n  - name: a\n    entrypoint: flows/missing.py:etl\n", "missing.py does not exist"),
    ("deployments:\n  - name: a\n    entrypoint: flows/etl.py:nope\n", "no flow 'nope'; flows found there: etl"),
    ("deployments:\n  - name: a\n    entrypoint: flows/etl.py:etl\n    schedules: {cron: '* * * * *'}\n",
     "'schedules' must be a list"),
    ("deployment:\n  - name: a\n", "unknown top-level key(s): 'deployment'"),
    ("deployments:\n  - name: a\n    entrypoint: flows/etl.py:etl\n  - name: a\n    entrypoint: flows/etl.py:etl\n",
     "'yaml-etl/a' is described twice"),
])
def test_apply_file_refuses_a_bad_file_before_saving_anything(project: Path, text: str, message: str) -> None:
    from plait.deployments._control import control_plane

    path = _write(project, text)
    with pytest.raises(DeploymentsFileError) as caught:
        apply_file(path)
    assert message in str(caught.value) and str(path) in str(caught.value)
    assert control_plane().list_deployments() == []


def test_deploy_to_a_missing_pool_says_how_to_create_it(project: Path) -> None:
    with pytest.raises(DeploymentError, match=r"work pool 'nowhere' does not exist; create it with `plait work-pool "
                                              r"create nowhere --type process`"):
        apply_file(_write(project, "deployments:\n  - {name: a, entrypoint: 'flows/etl.py:etl', work_pool: nowhere}\n"))


def test_flow_deploy_saves_and_reports_the_outcome(plait_env: str) -> None:
    _pool()
    first = typed_etl.deploy("py", work_pool="local", parameters={"n": 1}, cron="*/5 * * * *")
    assert first["outcome"] == "created" and first["flow_name"] == "typed-etl" and first["name"] == "py"
    assert typed_etl.deploy("py", work_pool="local", parameters={"n": 1}, cron="*/5 * * * *")["outcome"] == "unchanged"
    assert typed_etl.deploy("py", work_pool="local", parameters={"n": 1},
                            keep_schedules=True)["outcome"] == "unchanged"
    assert deploy(typed_etl, "py", work_pool="local", parameters={"n": 1})["outcome"] == "updated"  # no schedule
    assert get_deployment("typed-etl/py")["schedules"] == []


# -- runs ---------------------------------------------------------------------------------------------
def test_run_deployment_with_timeout_zero_returns_the_scheduled_run(plait_env: str) -> None:
    _pool()
    typed_etl.deploy("manual", work_pool="local", parameters={"n": 1, "cfg": {"rows": 2}})
    at = datetime.now(UTC) + timedelta(hours=1)
    run = run_deployment("typed-etl/manual", {"n": 5}, timeout=0, scheduled_time=at)
    assert run["state_type"] == "SCHEDULED"
    assert run["parameters"] == {"n": 5, "cfg": {"rows": 2}}
    assert run["work_pool_name"] == "local" and run["deployment_id"] == get_deployment("typed-etl/manual")["id"]
    assert abs(run["expected_start_time"] - at) < timedelta(seconds=1)
    assert run["parent_flow_run_id"] is None


def test_run_deployment_refuses_bad_parameters_before_making_a_run(plait_env: str) -> None:
    from plait.deployments._control import control_plane

    _pool()
    typed_etl.deploy("strict", work_pool="local")
    with pytest.raises(ParameterBindError, match="parameter 'n' is required"):
        run_deployment("typed-etl/strict", timeout=0)
    with pytest.raises(ParameterBindError, match=r"unknown parameter 'nn'.*parameter 'n': must be an integer"):
        run_deployment("typed-etl/strict", {"nn": 1, "n": "x"}, timeout=0)
    with pytest.raises(DeploymentNotFound, match="no deployment 'typed-etl/none'"):
        run_deployment("typed-etl/none", {"n": 1}, timeout=0)
    run = run_deployment("typed-etl/strict", {"n": 1}, timeout=0, idempotency_key="once")
    assert run_deployment("typed-etl/strict", {"n": 1}, timeout=0, idempotency_key="once")["id"] == run["id"]
    assert control_plane().get_flow_run(run["id"]) is not None


def test_run_deployment_waits_until_its_timeout_when_nothing_runs_it(plait_env: str) -> None:
    _pool()
    typed_etl.deploy("idle", work_pool="local", parameters={"n": 1})
    started = datetime.now(UTC)
    run = run_deployment("typed-etl/idle", timeout=1.0, poll_interval=0.2)
    assert timedelta(seconds=0.9) < datetime.now(UTC) - started < timedelta(seconds=5)
    assert run["state_type"] == "SCHEDULED"


@flow(name="parent-flow")
def parent_flow() -> dict[str, Any]:
    child = run_deployment("typed-etl/child", {"n": 2}, timeout=0)
    return {"child": child, "me": runtime.flow_run.id}


def test_run_deployment_inside_a_flow_links_the_child_to_its_parent(plait_env: str) -> None:
    _pool()
    typed_etl.deploy("child", work_pool="local")
    result = parent_flow()
    assert result["child"]["parent_flow_run_id"] == result["me"]


@pytest.fixture
def worker(plait_env: str) -> Iterator[None]:
    """A real worker of pool ``local`` in a thread; its runs are subprocesses."""
    from plait.worker import Worker

    _pool()
    running = Worker("local", poll_interval=0.2, heartbeat_interval=1.0)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    yield
    running.stop(now=True)
    thread.join(timeout=30)


def test_run_deployment_returns_the_final_run_a_worker_ran(project: Path, worker: None) -> None:
    _pool()
    apply_file(_write(project, "deployments:\n  - {name: e2e, entrypoint: 'flows/etl.py:etl', work_pool: local}\n"))
    run = run_deployment("yaml-etl/e2e", {"days": 4}, timeout=60, poll_interval=0.2)
    assert run["state_type"] == "COMPLETED", run
    assert run["parameters"]["days"] == 4


# -- backfill -------------------------------------------------------------------------------------------
def test_backfill_creates_each_missed_slot_once_with_the_schedulers_key(plait_env: str) -> None:
    from plait._store.database import get_database
    from plait._store.scheduling import plan_deployment_runs

    _pool()
    anchor = datetime(2024, 1, 1, tzinfo=UTC)
    typed_etl.deploy("hourly", work_pool="local", parameters={"n": 1},
                     schedules=[{"interval": 3600, "anchor": anchor, "parameters": {"n": 7}}])
    deployment = get_deployment("typed-etl/hourly")
    schedule_id = deployment["schedules"][0]["id"]
    # the scheduler made the 01:00 run already: backfill finds it by its key
    assert plan_deployment_runs(get_database(), deployment["id"], [(anchor + timedelta(hours=1), schedule_id, {})]) == 1

    done = backfill("typed-etl/hourly", anchor, anchor + timedelta(hours=3))
    assert (done["slots"], done["created"], done["existing"]) == (4, 3, 1)
    slots = [anchor + timedelta(hours=h) for h in range(4)]
    assert [r["expected_start_time"] for r in done["runs"]] == slots
    assert [r["idempotency_key"] for r in done["runs"]] == [slot_key(schedule_id, s) for s in slots]
    assert done["runs"][0]["parameters"] == {"n": 7}
    again = backfill("typed-etl/hourly", anchor, anchor + timedelta(hours=3))
    assert (again["created"], again["existing"]) == (0, 4)
    assert [r["id"] for r in again["runs"]] == [r["id"] for r in done["runs"]]

    with pytest.raises(DeploymentError, match="more than 2 slots"):
        backfill("typed-etl/hourly", anchor, anchor + timedelta(hours=3), limit=2)
    with pytest.raises(DeploymentError, match="is before its start"):
        backfill("typed-etl/hourly", anchor, anchor - timedelta(hours=1))
    typed_etl.deploy("unscheduled", work_pool="local")
    with pytest.raises(DeploymentError, match="has no active schedule"):
        backfill("typed-etl/unscheduled", anchor, anchor + timedelta(hours=1))
