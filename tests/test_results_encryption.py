"""Result payloads encrypted at rest: by setting, by flow or task option, and always when the
value holds secrets (a SecretStr, a block with secret fields), on SQLite and PostgreSQL."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from pydantic import BaseModel, SecretBytes, SecretStr

from plait import flow, task
from plait.exceptions import InvalidOptions
from plait.results import LocalStorage, read_result, read_result_ref, write_result
from plait.testing import PlaitTestHarness, plait_test_harness

CORE = Path(__file__).resolve().parents[1] / "core" / "plait"


@pytest.fixture
def harness(database_url: str) -> Iterator[PlaitTestHarness]:
    with plait_test_harness(database_url) as h:
        yield h


def canary() -> str:
    return f"canary-{uuid.uuid4().hex}"


def file_of(ref: str) -> bytes:
    return Path(unquote(urlparse(ref).path)).read_bytes()


def header_of(ref: str) -> dict[str, Any]:
    return json.loads(file_of(ref).split(b"\n")[1])


class Login(BaseModel):
    user: str
    password: SecretStr


def test_encrypt_result_option_setting_and_flow_default(harness: PlaitTestHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = canary()

    @task(persist_result=True, result_serializer="json", encrypt_result=True)
    def sealed() -> dict:
        return {"card": secret}

    @task(persist_result=True, result_serializer="json")
    def plain() -> dict:
        return {"card": secret}

    @task(persist_result=True, result_serializer="json", encrypt_result=False)
    def opted_out() -> dict:
        return {"card": secret}

    @flow
    def f() -> list:
        return [sealed(return_state=True), plain(return_state=True), opted_out(return_state=True)]

    @flow(encrypt_result=True)
    def g() -> list:
        return [plain(return_state=True), opted_out(return_state=True)]

    sealed_state, plain_state, out_state = f()
    assert secret.encode() not in file_of(sealed_state.result_ref)
    assert header_of(sealed_state.result_ref)["encryption"] == "fernet"
    assert read_result_ref(sealed_state.result_ref) == {"card": secret}
    # Positive control: without encryption the value is readable in the file.
    assert secret.encode() in file_of(plain_state.result_ref)
    assert header_of(plain_state.result_ref)["encryption"] is None

    flow_default, task_says_no = g()
    assert secret.encode() not in file_of(flow_default.result_ref)  # the flow's default
    assert secret.encode() in file_of(task_says_no.result_ref)  # the task's own option wins

    monkeypatch.setenv("PLAIT_ENCRYPT_RESULTS", "true")
    sealed_state, plain_state, out_state = f()
    assert secret.encode() not in file_of(sealed_state.result_ref)
    assert secret.encode() not in file_of(plain_state.result_ref)  # by the setting
    assert secret.encode() in file_of(out_state.result_ref)  # the task's option still wins
    assert read_result_ref(plain_state.result_ref) == {"card": secret}


def test_results_holding_secrets_are_always_encrypted(harness: PlaitTestHarness) -> None:
    values = {name: canary() for name in ("str", "bytes", "model", "block", "nested")}
    from plait_blocks import Secret

    @task(persist_result=True, encrypt_result=False)
    def secret_str() -> SecretStr:
        return SecretStr(values["str"])

    @task(persist_result=True, encrypt_result=False)
    def secret_bytes() -> SecretBytes:
        return SecretBytes(values["bytes"].encode())

    @task(persist_result=True, encrypt_result=False)
    def model() -> Login:
        return Login(user="robot", password=SecretStr(values["model"]))

    @task(persist_result=True, encrypt_result=False)
    def block() -> Any:
        return Secret(value=values["block"])

    @task(persist_result=True, encrypt_result=False)
    def nested() -> dict:
        return {"rows": [1, 2], "auth": [("token", SecretStr(values["nested"]))]}

    @task(persist_result=True, encrypt_result=False)
    def harmless() -> dict:
        return {"note": values["str"] + "-not-a-secret"}

    @flow
    def f() -> list:
        return [t(return_state=True) for t in (secret_str, secret_bytes, model, block, nested, harmless)]

    states = f()
    for (name, value), state in zip(values.items(), states, strict=False):
        raw = file_of(state.result_ref)
        assert value.encode() not in raw, f"{name}: secret stored in clear"
        assert header_of(state.result_ref)["encryption"] == "fernet", name
    assert read_result_ref(states[0].result_ref).get_secret_value() == values["str"]
    assert read_result_ref(states[1].result_ref).get_secret_value() == values["bytes"].encode()
    assert read_result_ref(states[2].result_ref).password.get_secret_value() == values["model"]
    assert read_result_ref(states[3].result_ref).get() == values["block"]
    assert read_result_ref(states[4].result_ref)["auth"][0][1].get_secret_value() == values["nested"]
    # Positive control: a plain value is not encrypted, and the search would have found it.
    assert values["str"].encode() in file_of(states[5].result_ref)
    assert header_of(states[5].result_ref)["encryption"] is None


def test_a_cached_encrypted_result_is_shared_across_processes(harness: PlaitTestHarness, tmp_path: Path) -> None:
    secret = canary()
    script = tmp_path / "sealed_flow.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        from plait import flow, task

        @task(cache_policy="inputs", encrypt_result=True, result_serializer="json")
        def fetch(x: int) -> dict:
            with open(sys.argv[1], "a") as marker:
                marker.write("ran\\n")
            return {{"token": {secret!r}, "x": x}}

        @flow
        def sealed(x: int) -> list:
            return [fetch(x, return_state=True)]

        [state] = sealed(1)
        print(json.dumps([state.type.value, state.result_ref, state.result()]))
    """), encoding="utf-8")
    marker = tmp_path / "marker"
    env = {**os.environ, "PLAIT_HOME": str(harness.home), "PLAIT_DATABASE_URL": harness.database_url}
    outputs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, str(script), str(marker)], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        outputs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert [o[0] for o in outputs] == ["COMPLETED", "CACHED"]
    assert outputs[1][2] == {"token": secret, "x": 1}
    assert marker.read_text() == "ran\n"
    assert secret.encode() not in file_of(outputs[0][1])


def test_another_key_cannot_read_an_encrypted_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.fernet import Fernet

    from plait.results import ResultRefused

    monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "home"))
    storage = LocalStorage(tmp_path / "store")
    write_result(storage, "k", {"a": 1}, "json", encrypt=True)
    assert read_result(storage, "k") == {"a": 1}
    monkeypatch.setenv("PLAIT_ENCRYPTION_KEY", Fernet.generate_key().decode())
    with pytest.raises(ResultRefused, match="another encryption key"):
        read_result(storage, "k")


def test_encrypt_result_must_be_a_bool() -> None:
    with pytest.raises(InvalidOptions, match="encrypt_result must be True, False or None"):
        task(encrypt_result="yes")(lambda: None)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name == "plait" or name.startswith("plait.")}


def test_results_masking_and_keys_keep_their_layers() -> None:
    """results (L5) uses only what is below it; _masking and _keys (L7) only L7 modules."""
    results = _imports(CORE / "results.py")
    assert not {n for n in results if n.split(".")[1] in ("blocks", "plugins", "_logging", "hookspecs", "notifications")}
    assert "plait" not in results
    low = {"plait.settings", "plait.exceptions", "plait._masking", "plait._keys", "plait.states", "plait._runs", "plait._version"}
    for module in ("_masking.py", "_keys.py"):
        imported = {n.rsplit(".", 1)[0] if n.rsplit(".", 1)[0] in low else n for n in _imports(CORE / module)}
        assert imported <= low, f"{module} imports {imported - low}"
