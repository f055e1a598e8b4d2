"""Acceptance proof: a secret saved in a block never shows up anywhere plait writes.

Blocks holding a unique canary (a ``secret`` block, a ``webhook`` whose URL contains it, and
the credentials block of a test plugin installed as a real distribution) are saved, then
loaded in a flow run in a fresh process that does everything careless code does with a
secret: logs it through ``get_run_logger()``, prints it with ``log_prints=True``, passes it
to tasks (plain, submitted, mapped) and to a subflow as arguments, logs the blocks' repr and
str, and fails a task with the secret in the exception message, all at DEBUG level so
tracebacks reach the console too.

Then the canary must be found nowhere: not in the bytes of any file under PLAIT_HOME (the
SQLite database and its -wal/-shm files included), not in any row of any table (SQLite and
PostgreSQL), not in the flow run's console output on stderr, and not in the output of any
``plait`` command, plain or ``--json``. Positive controls prove the search would find it:
``plait block inspect --show-secrets`` does print it, and the places it was written show
``***`` instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

PLAIT = Path(sys.executable).with_name("plait")
CANARY = f"canary-{uuid.uuid4().hex}"
HOOK_URL = f"https://hooks.example.com/services/{CANARY}"
TOKEN = f"tok-{CANARY}"

PLUGIN_MODULE = '''
"""A collection-like test plugin: one credentials block whose test_connection() quotes its token."""
from typing import ClassVar

from pydantic import Field, SecretStr

from plait.blocks import CredentialsBlock
from plait.hookspecs import hookimpl

PLAIT_REQUIRES = ">=0.1"


class CanaryCredentials(CredentialsBlock):
    """Credentials for the canary service."""

    block_type_slug: ClassVar[str] = "canary-credentials"
    user: str = Field(description="Who logs in.")
    token: SecretStr = Field(description="API token.")

    def test_connection(self) -> None:
        # A careless client library: its error quotes the token.
        raise PermissionError(f"server refused token {self.token.get_secret_value()} for {self.user}")


@hookimpl
def plait_register_blocks(register):
    register(CanaryCredentials)
'''

FLOW_SCRIPT = '''
import sys

from plait import flow, get_run_logger, task
from plait.blocks import Block
from plait_blocks import Secret
from plait_canary_plugin import CanaryCredentials


@task
def use(value, label="x"):
    get_run_logger().info("task %s got %s", label, value)
    return len(value)


@task
def explode(value):
    raise PermissionError(f"login rejected for {value}")


@flow(name="hygiene-child")
def child(token: str):
    get_run_logger().debug("child token %s", token)
    return use(token, "child")


@flow(name="hygiene", log_prints=True)
def hygiene():
    logger = get_run_logger()
    secret = Secret.load("canary-secret").get()
    hook = Block.load("webhook/canary-hook")
    creds = CanaryCredentials.load("canary-creds")
    url = hook.url.get_secret_value()
    token = creds.token.get_secret_value()
    logger.info("secret value: %s", secret)
    logger.info(f"webhook url: {url}")
    logger.warning("creds token: " + token)
    logger.info("blocks: %r | %s | %r", hook, creds, creds.token)
    logger.info("token length %d", token)  # a careless format: logging reports the record itself
    print("printed:", secret, url, token)
    use(secret, "secret")
    use.submit(token, "token").result()
    use.map([secret, url])
    child(secret)
    explode(secret)


if __name__ == "__main__":
    try:
        hygiene()
    except PermissionError:
        # The user's own exception object still holds the secret; plait's output must not.
        sys.exit(3)
'''


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the test plugin as an installed distribution (entry point
    ``canary`` in ``plait.plugins``), for sys.path and PYTHONPATH."""
    root = tmp_path_factory.mktemp("canary-plugin")
    (root / "plait_canary_plugin.py").write_text(PLUGIN_MODULE, encoding="utf-8")
    info = root / "plait_canary_plugin-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: plait-canary-plugin\nVersion: 1.0.0\nRequires-Dist: plait>=0.1\n",
        encoding="utf-8",
    )
    (info / "entry_points.txt").write_text("[plait.plugins]\ncanary = plait_canary_plugin\n", encoding="utf-8")
    return root


@pytest.fixture
def hygiene_env(plait_env: str, plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """PLAIT_* pointing at this test's database, the test plugin importable here and in
    subprocesses; yields the environment for subprocesses."""
    from plait.notifications import clear_cache
    from plait.plugins import reset_plugins

    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("PLAIT_PLUGINS", "plait_blocks,canary")  # whatever else is installed
    monkeypatch.setenv("PLAIT_LOGGING_LEVEL", "DEBUG")
    monkeypatch.setenv("COLUMNS", "250")
    reset_plugins()
    clear_cache()
    yield dict(os.environ)
    reset_plugins()
    clear_cache()


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=180)


def plait(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert PLAIT.exists(), f"console script not installed at {PLAIT}"
    return run([str(PLAIT), *args], env)


def save_canary_blocks(tmp_path: Path, env: dict[str, str]) -> None:
    """Save the blocks in a process of their own, so the flow's process learns the secrets
    only by loading them."""
    code = textwrap.dedent(f'''
        from plait_blocks import Secret, Webhook
        from plait_canary_plugin import CanaryCredentials
        Secret(value={CANARY!r}).save("canary-secret")
        Webhook(url={HOOK_URL!r}).save("canary-hook")
        CanaryCredentials(user="robot", token={TOKEN!r}).save("canary-creds")
    ''')
    done = run([sys.executable, "-c", code], env)
    assert done.returncode == 0, done.stderr


def table_rows_with_canary(url: str) -> list[str]:
    """``table.column`` of every stored value containing the canary, in any table."""
    from sqlalchemy import column, create_engine, inspect, select, table

    engine = create_engine(url)
    found = []
    try:
        with engine.connect() as conn:
            for name in inspect(conn).get_table_names():
                columns = [c["name"] for c in inspect(conn).get_columns(name)]
                for row in conn.execute(select(*(column(c) for c in columns)).select_from(table(name))):
                    for col, value in zip(columns, row, strict=False):
                        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                        if CANARY in text:
                            found.append(f"{name}.{col}")
    finally:
        engine.dispose()
    return sorted(set(found))


def files_with_canary(root: Path) -> list[str]:
    needle = CANARY.encode()
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()
    )


def test_a_saved_secret_is_found_nowhere(hygiene_env: dict[str, str], tmp_path: Path) -> None:
    env = hygiene_env
    home = Path(env["PLAIT_HOME"])
    url = env["PLAIT_DATABASE_URL"]
    save_canary_blocks(tmp_path, env)
    script = tmp_path / "hygiene_flow.py"
    script.write_text(FLOW_SCRIPT, encoding="utf-8")

    # -- the flow run, in a fresh process ------------------------------------------------------
    flow_run = run([sys.executable, str(script)], env)
    assert flow_run.returncode == 3, flow_run.stderr  # ended by explode(), as planned
    console = flow_run.stdout + flow_run.stderr
    assert CANARY not in console, f"canary in the flow run's console output:\n{_around(console)}"
    assert "login rejected for ***" in console, console  # the failure was shown, masked
    printed = next(line for line in console.splitlines() if "printed:" in line)
    # The canary is part of the URL and of the token: replacing it first would leave the
    # rest of those two secrets showing.
    assert printed.endswith("printed: *** *** ***"), f"secrets only partly masked: {printed}"

    # -- the store -------------------------------------------------------------------------------
    leaks = table_rows_with_canary(url)
    assert leaks == [], f"canary stored in {leaks}"
    if url.startswith("sqlite"):
        db_file = Path(url.removeprefix("sqlite:///"))
        assert db_file.exists()
        for suffix in ("", "-wal", "-shm"):
            path = Path(f"{db_file}{suffix}")
            if path.exists():
                assert CANARY.encode() not in path.read_bytes(), f"canary in the bytes of {path.name}"
    assert files_with_canary(home) == [], "canary in files under PLAIT_HOME"

    from plait.cli import commands

    runs = {r["flow_name"]: r for r in commands.flow_run_ls(limit=10)}
    assert set(runs) == {"hygiene", "hygiene-child"}
    assert runs["hygiene"]["state_type"] == "FAILED"
    assert runs["hygiene"]["state_message"] == "PermissionError: login rejected for ***"
    detail = commands.flow_run_inspect(runs["hygiene"]["id"])
    params = [t["parameters"] for t in detail["task_runs"] if t["task_name"] in ("use", "explode")]
    assert {"value": "***", "label": "secret"} in params and {"value": "***", "label": "token"} in params
    assert {"value": "***"} in params  # explode's argument
    # use(secret), use.submit(token), use.map([secret, url]) and explode(secret): all masked
    assert [p["value"] for p in params] == ["***"] * 5
    assert commands.flow_run_inspect(runs["hygiene-child"]["id"])["parameters"] == {"token": "***"}
    explode_run = next(t for t in detail["task_runs"] if t["task_name"] == "explode")
    assert "login rejected for ***" in explode_run["state_message"]
    messages = [r["message"] for r in commands.flow_run_logs(runs["hygiene"]["id"])]
    for expected in ("secret value: ***", "webhook url: ***", "creds token: ***", "printed: *** *** ***",
                     "task secret got ***", "task token got ***", "child token ***"):
        assert any(expected in m for m in messages), f"no log line with {expected!r}"
    blocks_line = next(m for m in messages if m.startswith("blocks: "))
    assert "**********" in blocks_line  # the blocks' repr masks their secrets

    # -- the command line, plain and --json ----------------------------------------------------
    commands_to_check: list[list[str]] = [
        ["flow-run", "ls"], ["flow-run", "inspect", runs["hygiene"]["id"]],
        ["flow-run", "inspect", runs["hygiene-child"]["id"]], ["flow-run", "logs", runs["hygiene"]["id"]],
        ["flow-run", "logs", runs["hygiene-child"]["id"]], ["block", "ls"], ["block", "ls", "--all"],
        ["block", "types"], ["block", "inspect", "secret/canary-secret"], ["block", "inspect", "canary-hook"],
        ["block", "inspect", "canary-credentials/canary-creds"], ["config", "show"], ["plugins", "ls"],
        ["notification", "ls"],
    ]
    variants = [v for args in commands_to_check for v in (args, [*args, "--json"])]
    with ThreadPoolExecutor(max_workers=8) as pool:  # independent readers
        outputs = list(pool.map(lambda variant: plait(*variant, env=env), variants))
    for variant, done in zip(variants, outputs, strict=False):
        assert done.returncode == 0, f"plait {' '.join(variant)}: {done.stderr}"
        assert CANARY not in done.stdout + done.stderr, f"canary in `plait {' '.join(variant)}`:\n{_around(done.stdout + done.stderr)}"
        if variant[-1] == "--json":
            json.loads(done.stdout)
    masked = json.loads(plait("block", "inspect", "webhook/canary-hook", "--json", env=env).stdout)
    assert masked["fields"]["url"] == "***"

    tested = plait("block", "test", "canary-creds", env=env)
    assert tested.returncode == 1 and tested.stdout == ""
    assert tested.stderr.startswith("Error: ") and "server refused token *** for robot" in tested.stderr
    assert CANARY not in tested.stderr

    # CliRunner, in this process (which never loaded the secrets itself).
    from plait.cli import cli

    for args in (["block", "inspect", "canary-creds"], ["block", "inspect", "canary-creds", "--json"],
                 ["block", "ls", "--json"], ["block", "test", "canary-creds"]):
        result = CliRunner().invoke(cli, args)
        assert CANARY not in result.output, f"canary in `plait {' '.join(args)}` (CliRunner)"

    # -- positive control: the secrets are really there, and the search would see them -------
    revealed = plait("block", "inspect", "canary-creds", "--show-secrets", "--json", env=env)
    assert revealed.returncode == 0 and json.loads(revealed.stdout)["fields"]["token"] == TOKEN
    hook = plait("block", "inspect", "canary-hook", "--show-secrets", env=env)
    assert HOOK_URL in hook.stdout
    assert files_with_canary(home) == []  # revealing on purpose wrote nothing either


# -- the scrubber itself, where the flow above found leaks ------------------------------------------
def test_a_secret_inside_another_is_replaced_after_it() -> None:
    """A short secret must not be replaced first and leave the rest of a longer one showing."""
    from plait._logging import register_secret, scrub

    short = f"short-{uuid.uuid4().hex[:8]}"
    longer = [f"{short}-tail{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(50)]
    for value in [short, *longer]:
        register_secret(value)
    text = " ".join(longer)
    scrubbed = scrub(text)
    assert "tail" not in scrubbed, f"parts of longer secrets left: {scrubbed[:120]}"
    assert scrubbed == " ".join(["***"] * 50)


def test_scrub_is_safe_while_another_thread_registers_secrets() -> None:
    """A task loading a block (registering its secrets) while another task logs."""
    import threading

    from plait._logging import register_secret, scrub

    errors: list[BaseException] = []
    stop = threading.Event()

    def log_lines() -> None:
        while not stop.is_set():
            try:
                scrub("a log line")
            except Exception as exc:  # RuntimeError: Set changed size during iteration
                errors.append(exc)
                return

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    reader = threading.Thread(target=log_lines)
    reader.start()
    try:
        base = uuid.uuid4().hex[:8]
        for i in range(2000):
            register_secret(f"race-{base}-{i:05d}")
            if errors:
                break
    finally:
        stop.set()
        reader.join()
        sys.setswitchinterval(interval)
    assert errors == []


def test_a_broken_log_call_does_not_print_its_arguments(hygiene_env: dict[str, str], tmp_path: Path) -> None:
    """logging.Handler.handleError prints a failing record's message and arguments raw."""
    save_canary_blocks(tmp_path, hygiene_env)
    script = tmp_path / "broken_log.py"
    script.write_text(textwrap.dedent('''
        from plait import flow, get_run_logger
        from plait_blocks import Secret

        @flow
        def careless():
            get_run_logger().info("token length %d", Secret.load("canary-secret").get())

        careless()
    '''), encoding="utf-8")
    done = run([sys.executable, str(script)], hygiene_env)
    assert done.returncode == 0, done.stderr
    assert CANARY not in done.stdout + done.stderr, _around(done.stdout + done.stderr)


def test_task_parameter_dict_keys_are_scrubbed() -> None:
    from plait._callables import jsonable
    from plait._logging import register_secret

    secret = f"key-{uuid.uuid4().hex}"
    register_secret(secret)
    stored = json.dumps(jsonable({"headers": {secret: "x"}, "plain": secret}))
    assert secret not in stored, stored


def _around(text: str, width: int = 160) -> str:
    """The lines around each canary, to say where a leak is."""
    return "\n".join(line[:width] for line in text.splitlines() if CANARY in line)


# -- escaped forms, and secrets passed as parameters ------------------------------------------------
ESCAPED_CORE = uuid.uuid4().hex
ESCAPED = f'esc\\aped"{ESCAPED_CORE}\'canary'  # a backslash and both quotes: repr and JSON escape it

ESCAPED_FLOW = '''
import sys

from plait import flow, get_run_logger, task
from plait_blocks import Secret


class Holder:
    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"Holder({self.value!r})"


@task
def carry(items, holder, mapping):
    get_run_logger().info("carrying %r and %r", items, mapping)
    return len(items)


@task
def explode(value):
    raise PermissionError(f"rejected {value!r}")


@flow(log_prints=True)
def escaped():
    secret = Secret.load("escaped-secret").get()
    logger = get_run_logger()
    logger.info("repr: %r", secret)
    logger.info("in a dict: %s", {"password": secret})
    logger.warning("json: %s", __import__("json").dumps({"password": secret}))
    print("printed", repr(secret))
    carry([secret, [secret]], Holder(secret), {"k": secret, secret: 1})
    explode(secret)


if __name__ == "__main__":
    try:
        escaped()
    except PermissionError:
        sys.exit(3)
'''


def stored_with(url: str, needle: str) -> list[str]:
    """``table.column`` of every stored value containing ``needle``, in any table."""
    from sqlalchemy import column, create_engine, inspect, select, table

    engine = create_engine(url)
    found = []
    try:
        with engine.connect() as conn:
            for name in inspect(conn).get_table_names():
                columns = [c["name"] for c in inspect(conn).get_columns(name)]
                for row in conn.execute(select(*(column(c) for c in columns)).select_from(table(name))):
                    for col, value in zip(columns, row, strict=True):
                        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                        if needle in text:
                            found.append(f"{name}.{col}")
    finally:
        engine.dispose()
    return sorted(set(found))


def raw_store_has(url: str, needle: str) -> list[str]:
    """Where the raw bytes of the store hold ``needle``: SQLite's files, or a pg_dump."""
    import shutil

    places = []
    if url.startswith("sqlite"):
        db_file = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            path = Path(f"{db_file}{suffix}")
            if path.exists() and needle.encode() in path.read_bytes():
                places.append(path.name)
        assert db_file.exists()
    else:
        pg_dump = shutil.which("pg_dump")
        if pg_dump is None:
            pytest.skip("pg_dump is not installed")
        plain = "postgresql://" + url.split("://", 1)[1]
        dump = subprocess.run([pg_dump, "--data-only", f"--dbname={plain}"], capture_output=True, timeout=120)
        assert dump.returncode == 0, dump.stderr
        assert b"COPY public.logs" in dump.stdout  # the dump really holds the history
        if needle.encode() in dump.stdout:
            places.append("pg_dump")
    return places


def test_an_escaped_canary_leaks_in_no_form(hygiene_env: dict[str, str], tmp_path: Path) -> None:
    env = hygiene_env
    url = env["PLAIT_DATABASE_URL"]
    code = f"from plait_blocks import Secret; Secret(value={ESCAPED!r}).save('escaped-secret')"
    done = run([sys.executable, "-c", code], env)
    assert done.returncode == 0, done.stderr
    script = tmp_path / "escaped_flow.py"
    script.write_text(ESCAPED_FLOW, encoding="utf-8")
    flow_run = run([sys.executable, str(script)], env)
    assert flow_run.returncode == 3, flow_run.stderr
    console = flow_run.stdout + flow_run.stderr
    assert ESCAPED_CORE not in console, [line for line in console.splitlines() if ESCAPED_CORE in line]
    assert "repr: '***'" in console and "rejected '***'" in console  # shown, masked

    assert stored_with(url, ESCAPED_CORE) == []
    assert raw_store_has(url, ESCAPED_CORE) == []
    assert files_with(Path(env["PLAIT_HOME"]), ESCAPED_CORE) == []
    from plait.cli import commands

    [run_row] = [r for r in commands.flow_run_ls(limit=5) if r["flow_name"] == "escaped"]
    messages = [r["message"] for r in commands.flow_run_logs(run_row["id"])]
    assert any("repr: '***'" in m for m in messages) and any('json: {"password": "***"}' in m for m in messages)
    carried = next(t for t in commands.flow_run_inspect(run_row["id"])["task_runs"] if t["task_name"] == "carry")
    assert carried["parameters"]["items"] == ["***", ["***"]]
    assert carried["parameters"]["holder"] == "Holder('***')"
    assert carried["parameters"]["mapping"] == {"k": "***", "***": 1}
    for args in (["flow-run", "logs", run_row["id"], "--json"], ["flow-run", "inspect", run_row["id"], "--json"],
                 ["flow-run", "logs", run_row["id"]]):
        out = plait(*args, env=env)
        assert out.returncode == 0 and ESCAPED_CORE not in out.stdout + out.stderr, args


def files_with(root: Path, needle: str) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes())


def test_secrets_passed_as_parameters_are_never_stored_in_clear(plait_env: str) -> None:
    """A plain string given to a ``SecretStr`` parameter, a model (or block) with secret
    fields, and a SecretStr given to an untyped parameter: stored masked in the flow's and
    the tasks' parameters, masked in logs, and found nowhere in the store's raw bytes."""
    from pydantic import BaseModel, SecretStr

    from plait import flow, get_run_logger, task
    from plait.testing import plait_test_harness
    from plait_blocks import Secret

    core = uuid.uuid4().hex
    token, password, key, block_value, pin = (f"{name}-{core}" for name in ("token", "pw", "key", "blk", "pin"))

    class Login(BaseModel):
        user: str
        password: SecretStr

    @task
    def connect(token: SecretStr, login: Login, whatever) -> str:
        return login.user

    @flow
    def deploy(token: SecretStr, login: Login, api_key, vault: Secret, pin: SecretStr | None = None) -> str:
        get_run_logger().info("deploying with %s and %s", token, api_key.get_secret_value())
        get_run_logger().info("vault holds %s", vault.get())
        return connect(token, login, api_key)

    with plait_test_harness(plait_env) as harness:
        login = Login(user="robot", password=SecretStr(password))
        assert deploy(token, login, SecretStr(key), Secret(value=block_value), pin="739") == "robot"
        [run_row] = harness.flow_runs()
        detail = harness.flow_run(run_row["id"])
        params = detail["parameters"]
        assert params["token"] == "***" and params["api_key"] == "***" and params["pin"] == "***"
        assert "**********" in params["login"] and "robot" in params["login"]  # the model's repr, masked
        assert block_value not in params["vault"]
        task_params = detail["task_runs"][0]["parameters"]
        assert task_params["token"] == "***" and task_params["whatever"] == "***"
        messages = [r["message"] for r in harness.logs(run_row["id"])]
        assert "deploying with *** and ***" in messages and "vault holds ***" in messages
        harness.flush()
        assert stored_with(plait_env, core) == []
        assert raw_store_has(plait_env, core) == []
