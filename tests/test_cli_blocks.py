"""``plait plugins ls``, ``plait block ...`` and ``plait notification ...``.

Run through click's CliRunner, through the plain functions behind the commands, and through
the installed ``plait`` console script, against real databases (SQLite, and PostgreSQL when
reachable). Test plugins are installed for real: a directory holding their modules and
``.dist-info`` metadata with ``plait.plugins`` entry points is put on ``sys.path`` (and
``PYTHONPATH`` for subprocesses), so discovery goes through importlib.metadata as it does
for any collection.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from plait.cli import cli

PLAIT = Path(sys.executable).with_name("plait")
BOX_CHARS = set("─━│┃┌┐└┘├┤┬┴┼╭╮╰╯═║")
BUILT_IN_SLUGS = {"local-file-system", "secret", "json", "webhook", "slack-webhook", "email", "process"}
GOOD_TOKEN = "good-7f3a9c"
BAD_TOKEN = "bad-token-5e1d0b"

SERVICE_PLUGIN = '''
"""A collection-like test plugin with one credentials block."""
from typing import ClassVar

from pydantic import Field, SecretStr

from plait.blocks import CredentialsBlock
from plait.hookspecs import hookimpl


class ServiceCredentials(CredentialsBlock):
    """Credentials for the example service."""

    block_type_slug: ClassVar[str] = "service-credentials"
    user: str = Field(description="Who logs in.")
    token: SecretStr = Field(description="API token of the user.")
    retries: int = Field(default=3, description="How often to retry a call.")
    scopes: list[str] = Field(default_factory=list, description="OAuth scopes to ask for.")
    region: str | None = Field(default=None, description="Region of the service.")

    def test_connection(self) -> None:
        token = self.token.get_secret_value()
        if not token.startswith("good-"):
            raise PermissionError(f"token {token} was rejected for {self.user}")


@hookimpl
def plait_register_blocks(register):
    register(ServiceCredentials)
'''

PLUGINS = {
    # module name: (distribution, version, requires, module source)
    "plait_cli_service": ("plait-cli-service", "1.4.0", "plait>=0.1", SERVICE_PLUGIN),
    "plait_cli_broken": ("plait-cli-broken", "0.3.0", "plait>=0.1",
                         "raise ImportError('libfoo.so.1: cannot open shared object file')\n"),
    "plait_cli_old": ("plait-cli-old", "2.0.0", "plait>=99", "PLAIT_REQUIRES = '>=99'\n"),
}


def _install(root: Path, modules: list[str]) -> Path:
    for module in modules:
        dist, version, requires, source = PLUGINS[module]
        (root / f"{module}.py").write_text(source, encoding="utf-8")
        info = root / f"{module}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\nRequires-Dist: {requires}\n", encoding="utf-8"
        )
        (info / "entry_points.txt").write_text(f"[plait.plugins]\n{module.removeprefix('plait_cli_')} = {module}\n")
    return root


@pytest.fixture(scope="module")
def service_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _install(tmp_path_factory.mktemp("service-plugin"), ["plait_cli_service"])


@pytest.fixture(scope="module")
def broken_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _install(tmp_path_factory.mktemp("broken-plugins"), ["plait_cli_broken", "plait_cli_old"])


def _use_plugins(monkeypatch: pytest.MonkeyPatch, *dirs: Path, only: str = "plait_blocks,service") -> None:
    """Load only the built-in blocks and these test plugins, whatever else is installed."""
    from plait.plugins import reset_plugins

    monkeypatch.setenv("PLAIT_PLUGINS", only)
    for directory in dirs:
        monkeypatch.syspath_prepend(str(directory))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([*map(str, dirs), os.environ.get("PYTHONPATH", "")]))
    reset_plugins()


@pytest.fixture
def env(plait_env: str, service_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from plait.notifications import clear_cache
    from plait.plugins import reset_plugins

    _use_plugins(monkeypatch, service_dir)
    clear_cache()
    yield plait_env
    reset_plugins()
    clear_cache()


def invoke(*args: str, input: str | None = None) -> object:
    result = CliRunner().invoke(cli, list(args), input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def ok(*args: str, input: str | None = None) -> object:
    result = invoke(*args, input=input)
    assert result.exit_code == 0, result.output
    return result


def fails(*args: str, input: str | None = None) -> str:
    """The one-line error of a command that must fail with exit code 1."""
    result = invoke(*args, input=input)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output
    return result.stderr.strip()


def table(text: str, first_header: str) -> list[dict[str, str]]:
    """Rows of a plain table whose header line starts with ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_header))
    header = lines[start]
    starts = [m.start() for m in re.finditer(r"(?:(?<=\s{2})|^)\S", header)]
    names = [header[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=False)]
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cells = (line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=False))
        rows.append(dict(zip(names, cells, strict=False)))
    return rows


def assert_plain(text: str) -> None:
    assert "\x1b[" not in text and not BOX_CHARS & set(text)


# -- plugins ls ---------------------------------------------------------------------------------
def test_plugins_ls_shows_plugins_and_diagnoses(env: str, broken_dir: Path, service_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import plait

    _use_plugins(monkeypatch, service_dir, broken_dir, only="plait_blocks,service,broken,old")
    out = ok("plugins", "ls").stdout
    assert_plain(out)
    rows = {r["NAME"]: r for r in table(out, "NAME")}
    assert rows["plait_blocks"]["LOADED"] == "yes"
    assert rows["plait_blocks"]["DISTRIBUTION"] == "plait" and rows["plait_blocks"]["VERSION"] == plait.__version__
    assert "plait_register_blocks" in rows["plait_blocks"]["HOOKS"] and "plait_notify" in rows["plait_blocks"]["HOOKS"]
    service = rows["service"]
    assert (service["DISTRIBUTION"], service["VERSION"], service["PLAIT"], service["LOADED"]) == (
        "plait-cli-service", "1.4.0", ">=0.1", "yes",
    )
    assert service["HOOKS"] == "plait_register_blocks"
    assert (rows["broken"]["LOADED"], rows["broken"]["HOOKS"]) == ("no", "-")
    assert rows["old"]["LOADED"] == "no"

    assert "Problems (2)" in out
    problems = {r["PLUGIN"]: r for r in table(out.split("Problems (2)")[1], "PLUGIN")}
    assert "failed to import plait_cli_broken" in problems["broken"]["REASON"]
    assert "libfoo.so.1" in problems["broken"]["REASON"]
    assert "reinstall or upgrade plait-cli-broken" in problems["broken"]["FIX"]
    assert "supports plait>=99" in problems["old"]["REASON"] and problems["old"]["VERSION"] == "2.0.0"
    assert "install a version of plait-cli-old" in problems["old"]["FIX"]

    data = json.loads(ok("plugins", "ls", "--json").stdout)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert by_name["service"]["loaded"] is True and by_name["broken"]["loaded"] is False
    assert {d["plugin"] for d in data["diagnoses"]} == {"broken", "old"}
    assert set(data["diagnoses"][0]) == {"plugin", "version", "reason", "fix"}

    from plait.cli.plugins import plugins_ls

    assert plugins_ls() == data


def test_plugins_ls_without_problems(env: str) -> None:
    out = ok("plugins", "ls").stdout
    assert "Problems" not in out
    assert {r["NAME"] for r in table(out, "NAME")} == {"plait_blocks", "service"}


# -- block types and ls --------------------------------------------------------------------------
def test_block_types(env: str) -> None:
    out = ok("block", "types").stdout
    assert_plain(out)
    rows = {r["SLUG"]: r for r in table(out, "SLUG")}
    assert set(rows) >= BUILT_IN_SLUGS | {"service-credentials"}
    assert rows["service-credentials"]["CAPABILITIES"] == "credentials"
    assert rows["service-credentials"]["SECRET FIELDS"] == "token"
    assert rows["service-credentials"]["PLUGIN"] == "service"
    assert rows["webhook"]["CAPABILITIES"] == "notify" and rows["webhook"]["PLUGIN"] == "plait_blocks"
    data = json.loads(ok("block", "types", "--json").stdout)
    service = next(t for t in data if t["slug"] == "service-credentials")
    assert service["secret_fields"] == ["token"] and service["description"] == "Credentials for the example service."


def test_block_ls_filters_and_errors(env: str) -> None:
    assert ok("block", "ls").stdout.strip().startswith("No saved blocks.")
    assert json.loads(ok("block", "ls", "--json").stdout) == []
    ok("block", "create", "secret", "api-token", "--set", "value=abcd-1234")
    ok("block", "create", "json", "settings", "--set", 'value={"tables": ["a", "b"]}')
    ok("block", "create", "service-credentials", "svc", "--set", "user=robot", "--set", f"token={GOOD_TOKEN}")

    rows = table(ok("block", "ls").stdout, "NAME")
    assert {(r["NAME"], r["TYPE"]) for r in rows} == {
        ("api-token", "secret"), ("settings", "json"), ("svc", "service-credentials"),
    }
    assert all(len(r["ID"]) >= 8 for r in rows)
    assert [r["NAME"] for r in table(ok("block", "ls", "--type", "json").stdout, "NAME")] == ["settings"]
    listed = json.loads(ok("block", "ls", "--json", "--type", "secret").stdout)
    assert [(d["name"], d["slug"]) for d in listed] == [("api-token", "secret")]
    assert set(listed[0]) >= {"name", "slug", "type_name", "id", "created", "updated"}
    assert len(json.loads(ok("block", "ls", "--all", "--json").stdout)) >= 3

    error = fails("block", "ls", "--type", "secrte")
    assert "secrte" in error and "secret" in error  # the suggestion from BlockNotFound

    from plait.cli.blocks import block_ls

    assert [d["name"] for d in block_ls(type_slug="json")] == ["settings"]


# -- block create --------------------------------------------------------------------------------
def test_block_create_with_set_parses_json_for_non_string_fields(env: str) -> None:
    out = ok("block", "create", "service-credentials", "svc", "--set", "user=robot", "--set", f"token={GOOD_TOKEN}",
             "--set", "retries=5", "--set", 'scopes=["read", "write"]', "--set", "region=eu-1").stdout
    assert out.startswith("Saved block service-credentials/svc")
    data = json.loads(ok("block", "inspect", "service-credentials/svc", "--json").stdout)
    assert data["fields"] == {"user": "robot", "token": "***", "retries": 5, "scopes": ["read", "write"], "region": "eu-1"}
    # a string field keeps JSON-looking text as it is
    ok("block", "create", "service-credentials", "digits", "--set", "user=12345", "--set", f"token={GOOD_TOKEN}")
    assert json.loads(ok("block", "inspect", "digits", "--json").stdout)["fields"]["user"] == "12345"

    taken = fails("block", "create", "service-credentials", "svc", "--set", "user=other", "--set", f"token={GOOD_TOKEN}")
    assert "svc" in taken
    ok("block", "create", "service-credentials", "svc", "--set", "user=other", "--set", f"token={GOOD_TOKEN}", "--overwrite")
    assert json.loads(ok("block", "inspect", "svc", "--json").stdout)["fields"]["user"] == "other"


def test_block_create_errors_name_the_field_never_the_value(env: str) -> None:
    error = fails("block", "create", "service-credentials", "svc", "--set", "user=robot", "--set", "retries=many",
                  "--set", f"token={BAD_TOKEN}")
    assert "retries" in error and "many" not in error and BAD_TOKEN not in error
    missing = fails("block", "create", "service-credentials", "svc", "--set", "user=robot")
    assert "token" in missing
    unknown_field = fails("block", "create", "service-credentials", "svc", "--set", "colour=red")
    assert "no field 'colour'" in unknown_field and "user, token, retries, scopes, region" in unknown_field
    no_field = fails("block", "create", "secret", "x", "--set", BAD_TOKEN)
    assert "FIELD=VALUE" in no_field and BAD_TOKEN not in no_field
    unknown_type = fails("block", "create", "webhok", "x", "--set", "url=http://127.0.0.1/")
    assert "webhok" in unknown_type and "webhook" in unknown_type
    bad_url = fails("block", "create", "webhook", "x", "--set", f"url=ftp://{BAD_TOKEN}")
    assert "url" in bad_url and BAD_TOKEN not in bad_url
    assert json.loads(ok("block", "ls", "--json").stdout) == []


def test_block_create_prompts_for_each_field(env: str) -> None:
    # user (required: an empty answer asks again), token (hidden), retries (JSON), scopes and
    # region skipped with an empty answer.
    result = ok("block", "create", "service-credentials", "svc", input=f"\nrobot\n{GOOD_TOKEN}\n7\n\n\n")
    assert "user (Who logs in.)" in result.output
    assert "token (API token of the user.)" in result.output
    assert "retries (How often to retry a call.) [optional, default 3]" in result.output
    assert "region (Region of the service.) [optional]" in result.output
    assert GOOD_TOKEN not in result.output  # typed without echo
    assert result.stdout.strip().startswith("Saved block service-credentials/svc")
    fields = json.loads(ok("block", "inspect", "svc", "--json", "--show-secrets").stdout)["fields"]
    assert fields == {"user": "robot", "token": GOOD_TOKEN, "retries": 7, "scopes": [], "region": None}


# -- block inspect, delete, test ------------------------------------------------------------------
def test_block_inspect_masks_secrets_unless_asked(env: str) -> None:
    url = "http://127.0.0.1:9/hooks/T0K3N-SECRET"
    ok("block", "create", "webhook", "ops", "--set", f"url={url}", "--set", 'headers={"Authorization": "Bearer XYZ-SECRET"}')
    out = ok("block", "inspect", "webhook/ops").stdout
    assert_plain(out)
    assert re.search(r"^Name\s+ops$", out, re.M)
    assert re.search(r"^Type\s+webhook \(Webhook\)$", out, re.M)
    assert re.search(r"^Capabilities\s+notify$", out, re.M)
    assert re.search(r"^Secret fields\s+url, headers$", out, re.M)
    assert re.search(r"^url\s+\*\*\*$", out, re.M)
    assert re.search(r"^method\s+POST$", out, re.M)
    assert "T0K3N-SECRET" not in out and "XYZ-SECRET" not in out
    data = json.loads(ok("block", "inspect", "ops", "--json").stdout)
    assert (data["name"], data["slug"], data["capabilities"]) == ("ops", "webhook", ["notify"])
    assert data["fields"]["url"] == "***" and "XYZ-SECRET" not in json.dumps(data)
    shown = json.loads(ok("block", "inspect", "ops", "--json", "--show-secrets").stdout)
    assert shown["fields"]["url"] == url and shown["fields"]["headers"] == {"Authorization": "Bearer XYZ-SECRET"}
    assert url in ok("block", "inspect", "ops", "--show-secrets").stdout

    error = fails("block", "inspect", "webhook/opz")
    assert "opz" in error and "ops" in error  # suggestions from BlockNotFound


def test_block_delete_asks_first(env: str) -> None:
    ok("block", "create", "secret", "doomed", "--set", "value=abcd-1234")
    kept = invoke("block", "delete", "doomed", input="n\n")
    assert kept.exit_code == 1 and "Delete block secret/doomed?" in kept.output
    assert len(json.loads(ok("block", "ls", "--json").stdout)) == 1
    assert ok("block", "delete", "secret/doomed", input="y\n").stdout.strip().endswith("Deleted block secret/doomed.")
    assert json.loads(ok("block", "ls", "--json").stdout) == []
    ok("block", "create", "secret", "doomed", "--set", "value=abcd-1234")
    assert ok("block", "delete", "doomed", "--yes").stdout.strip() == "Deleted block secret/doomed."
    assert "doomed" in fails("block", "delete", "doomed", "--yes")


def test_block_test_prints_ok_or_the_scrubbed_reason(env: str) -> None:
    ok("block", "create", "service-credentials", "good", "--set", "user=robot", "--set", f"token={GOOD_TOKEN}")
    ok("block", "create", "service-credentials", "bad", "--set", "user=robot", "--set", f"token={BAD_TOKEN}")
    assert ok("block", "test", "good").stdout == "ok\n"
    error = fails("block", "test", "service-credentials/bad")
    assert error == "Error: service-credentials/bad: PermissionError: token *** was rejected for robot"
    ok("block", "create", "webhook", "ops", "--set", "url=http://127.0.0.1:9/x")
    assert "cannot test its connection" in fails("block", "test", "ops")

    from plait.cli.blocks import block_test
    from plait.exceptions import BlockError

    assert block_test("good") == {"name": "good", "slug": "service-credentials", "ok": True}
    with pytest.raises(BlockError, match=r"token \*\*\* was rejected"):
        block_test("bad")


# -- block apply --------------------------------------------------------------------------------
BLOCKS_FILE = """
[[blocks]]
type = "webhook"
name = "ops"
values = { url = "${env:OPS_HOOK_URL}", timeout_seconds = TIMEOUT }

[[blocks]]
type = "secret"
name = "api-token"
values = { value = "abcd-1234" }
"""


def test_block_apply_creates_updates_and_dry_runs(env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_HOOK_URL", "http://127.0.0.1:9/hooks/T0K3N-APPLY")
    path = tmp_path / "blocks.toml"
    path.write_text(BLOCKS_FILE.replace("TIMEOUT", "5"), encoding="utf-8")

    dry = ok("block", "apply", str(path), "--dry-run").stdout
    assert_plain(dry)
    assert [(r["NAME"], r["TYPE"], r["ACTION"]) for r in table(dry, "NAME")] == [
        ("ops", "webhook", "created"), ("api-token", "secret", "created"),
    ]
    assert dry.rstrip().endswith("Dry run: nothing was saved.")
    assert json.loads(ok("block", "ls", "--json").stdout) == []

    applied = ok("block", "apply", str(path)).stdout
    assert [r["ACTION"] for r in table(applied, "NAME")] == ["created", "created"]
    assert "Dry run" not in applied
    assert {d["name"] for d in json.loads(ok("block", "ls", "--json").stdout)} == {"ops", "api-token"}
    again = json.loads(ok("block", "apply", str(path), "--json").stdout)
    assert again == [
        {"name": "ops", "slug": "webhook", "action": "unchanged"},
        {"name": "api-token", "slug": "secret", "action": "unchanged"},
    ]
    path.write_text(BLOCKS_FILE.replace("TIMEOUT", "7"), encoding="utf-8")
    assert [r["action"] for r in json.loads(ok("block", "apply", str(path), "--json", "--dry-run").stdout)] == [
        "updated", "unchanged",
    ]
    assert [r["ACTION"] for r in table(ok("block", "apply", str(path)).stdout, "NAME")] == ["updated", "unchanged"]
    assert json.loads(ok("block", "inspect", "ops", "--json").stdout)["fields"]["timeout_seconds"] == 7

    monkeypatch.delenv("OPS_HOOK_URL")
    missing = fails("block", "apply", str(path))
    assert "OPS_HOOK_URL" in missing
    assert "no such file" in fails("block", "apply", str(tmp_path / "nope.toml"))

    from plait.cli.blocks import block_apply

    monkeypatch.setenv("OPS_HOOK_URL", "http://127.0.0.1:9/hooks/T0K3N-APPLY")
    assert [r["action"] for r in block_apply(path)] == ["unchanged", "unchanged"]


# -- notification rules -------------------------------------------------------------------------
def test_notification_commands(env: str) -> None:
    ok("block", "create", "webhook", "ops", "--set", "url=http://127.0.0.1:9/x")
    ok("block", "create", "secret", "token", "--set", "value=abcd-1234")
    assert ok("notification", "ls").stdout.startswith("No notification rules.")

    out = ok("notification", "create", "--block", "webhook/ops", "--flow", "etl-*", "--tag", "prod", "--tag", "eu",
             "--state", "failed", "--state", "Completed", "--name", "etl-prod").stdout
    assert out.startswith("Created notification rule etl-prod (")
    assert "webhook/ops on failed, completed of flows matching 'etl-*' tagged prod, eu" in out
    default = json.loads(ok("notification", "create", "--block", "ops", "--json").stdout)
    assert (default["flow_name"], default["states"], default["tags"]) == ("*", ["FAILED", "CRASHED"], [])

    rows = table(ok("notification", "ls").stdout, "ID")
    assert [(r["NAME"], r["BLOCK"], r["FLOW"], r["TAGS"], r["STATES"], r["ENABLED"]) for r in rows] == [
        ("etl-prod", "webhook/ops", "etl-*", "prod, eu", "failed, completed", "yes"),
        (default["name"], "webhook/ops", "*", "-", "failed, crashed", "yes"),
    ]
    listed = json.loads(ok("notification", "ls", "--json").stdout)
    assert [r["name"] for r in listed] == ["etl-prod", default["name"]] and listed[1] == default

    bad_state = fails("notification", "create", "--block", "webhook/ops", "--state", "exploded")
    assert "'exploded'" in bad_state and "FAILED" in bad_state and "CRASHED" in bad_state
    not_a_notifier = fails("notification", "create", "--block", "secret/token")
    assert "cannot send notifications" in not_a_notifier and "plait block ls" in not_a_notifier
    assert "opz" in fails("notification", "create", "--block", "webhook/opz")
    assert "already exists" in fails("notification", "create", "--block", "ops", "--name", "etl-prod")
    assert invoke("notification", "create").exit_code == 2  # --block is required

    assert ok("notification", "delete", "etl-prod").stdout.startswith("Deleted notification rule etl-prod (")
    assert ok("notification", "delete", default["id"][:8]).stdout.startswith(f"Deleted notification rule {default['name']}")
    assert "no notification rule matches 'etl-prod'" in fails("notification", "delete", "etl-prod")

    from plait.cli.notifications import notification_create, notification_delete, notification_ls

    rule = notification_create("webhook/ops", flow_name="x", tags=["t"], states=["running"], name="fn")
    assert notification_ls() == [rule]
    assert notification_delete("fn") == rule


# -- rich mode ----------------------------------------------------------------------------------
def test_rich_tables_on_a_terminal(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from plait.cli import _output

    ok("block", "create", "webhook", "ops", "--set", "url=http://127.0.0.1:9/x")
    ok("notification", "create", "--block", "webhook/ops")
    monkeypatch.setattr(_output, "use_rich", lambda: True)
    monkeypatch.setenv("COLUMNS", "200")
    for args in (["block", "types"], ["block", "ls"], ["block", "inspect", "ops"], ["notification", "ls"],
                 ["plugins", "ls"]):
        out = ok(*args).stdout
        assert out.strip() and "T0K3N" not in out


# -- the installed console script ---------------------------------------------------------------
def test_console_script(env: str) -> None:
    assert PLAIT.exists(), f"console script not installed at {PLAIT}"

    def plait(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(PLAIT), *args], capture_output=True, text=True, env=dict(os.environ), timeout=120)

    created = plait("block", "create", "service-credentials", "svc", "--set", "user=robot", "--set", f"token={BAD_TOKEN}")
    assert created.returncode == 0, created.stderr
    made = plait("block", "create", "webhook", "ops", "--set", "url=http://127.0.0.1:9/x")
    assert made.returncode == 0, made.stderr
    types = json.loads(plait("block", "types", "--json").stdout)
    assert {t["slug"] for t in types} >= BUILT_IN_SLUGS | {"service-credentials"}
    listed = plait("block", "ls")
    assert listed.returncode == 0 and {r["NAME"] for r in table(listed.stdout, "NAME")} == {"svc", "ops"}
    tested = plait("block", "test", "svc")
    assert tested.returncode == 1 and tested.stdout == ""
    assert tested.stderr.strip() == "Error: service-credentials/svc: PermissionError: token *** was rejected for robot"
    rule = plait("notification", "create", "--block", "webhook/ops", "--state", "crashed", "--json")
    assert rule.returncode == 0, rule.stderr
    assert json.loads(plait("notification", "ls", "--json").stdout) == [json.loads(rule.stdout)]
    plugins = json.loads(plait("plugins", "ls", "--json").stdout)
    assert {p["name"] for p in plugins["plugins"] if p["loaded"]} >= {"plait_blocks", "service"}
    assert BAD_TOKEN not in "".join(p.stdout + p.stderr for p in (created, listed, tested, rule))
