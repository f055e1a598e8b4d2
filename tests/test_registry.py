"""The collections registry: building registry.json, checking it, and `plait collection ...`.

Builds run against scratch checkouts written into tmp_path: a fake core pyproject with a tiny
built-in plugin, and tiny collections (pyproject, package, plugin) that are imported by the
builder from their own directories. Listing uses real installed metadata: fake ``.dist-info``
directories put on ``sys.path``. The last tests check the real repository's registry.json,
which is what CI runs (`plait registry check`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from plait.cli import cli
from plait.cli.collections import collection_info, collection_install_plan, collection_ls
from plait.registry import (
    Registry,
    RegistryError,
    build_document,
    build_registry,
    check_registry,
    load_registry,
    render,
)
from plait.registry._install import run_command

ROOT = Path(__file__).resolve().parents[1]
PLAIT = Path(sys.executable).with_name("plait")
GUIDE = ROOT / "docs" / "collections" / "writing-a-collection.md"
FILE_BLOCK = re.compile(r"```(?:python|toml)\n# file: (?P<path>\S+)\n(?P<body>.*?)```", re.DOTALL)

CORE = {
    "pyproject.toml": """
        [project]
        name = "plait"
        version = "0.1.0"

        [project.entry-points."plait.plugins"]
        fake_builtin = "fake_builtin.plugin"
    """,
    "blocks/fake_builtin/__init__.py": "",
    "blocks/fake_builtin/plugin.py": '''
        from pydantic import Field

        from plait.blocks import Block
        from plait.hookspecs import hookimpl


        class Memo(Block):
            """A note kept with the flow."""

            text: str = Field(description="What to remember.")
            code_example = 'Memo(text="hi").save("note")'


        @hookimpl
        def plait_register_blocks(register):
            register(Memo)


        @hookimpl
        def plait_register_storage(register):
            register("memo", lambda url: None)
    ''',
}

ALPHA = {
    "pyproject.toml": """
        [build-system]
        requires = ["hatchling>=1.21"]
        build-backend = "hatchling.build"

        [project]
        name = "plait-alpha"
        version = "0.1.0"
        description = "Alpha weather for plait flows."
        requires-python = ">=3.11"
        license = "Apache-2.0"
        dependencies = ["plait<0.2,>=0.1", "httpx>=0.27"]

        [project.entry-points."plait.plugins"]
        plait_alpha = "plait_alpha.plugin"
    """,
    "plait_alpha/__init__.py": '''
        from __future__ import annotations

        from typing import Any

        from pydantic import Field, SecretStr

        from plait import flow, task
        from plait.blocks import CredentialsBlock


        class AlphaCredentials(CredentialsBlock):
            """Credentials for the Alpha API.

            Create a key on the account page.
            """

            api_key: SecretStr = Field(description="The API key.")
            region: str = Field("eu", description="Where the account lives.")
            code_example = 'AlphaCredentials(api_key="k").save("alpha")'

            def test_connection(self) -> None:
                return None


        @task(retries=2)
        def fetch(city: str, limit: int = 10, *, credentials: AlphaCredentials | None = None) -> list[dict[str, Any]]:
            """Fetch the forecast
            for a city.

            Returns one dict per day.

            Example:
                fetch("Oslo", limit=3)
            """
            return [{"city": city}] * limit


        @flow
        def forecast_all(cities: list[str]) -> int:
            """Fetch every city."""
            return len(cities)
    ''',
    "plait_alpha/plugin.py": """
        from plait.hookspecs import hookimpl

        from plait_alpha import AlphaCredentials, fetch, forecast_all


        @hookimpl
        def plait_register_blocks(register):
            register(AlphaCredentials)


        @hookimpl
        def plait_register_tasks(register):
            register(fetch)


        @hookimpl
        def plait_register_flows(register):
            register(forecast_all)


        @hookimpl
        def plait_register_storage(register):
            register("alpha", lambda url: None)
    """,
}

BETA = {
    "pyproject.toml": """
        [project]
        name = "plait-beta"
        version = "0.1.0"
        description = "Beta storage."
        dependencies = ["plait>=0.1,<0.2"]

        [project.entry-points."plait.plugins"]
        plait_beta = "plait_beta.plugin"
    """,
    "plait_beta/__init__.py": """
        from plait_beta.storage import BetaStorage
        from plait_beta.tasks import upload
    """,
    "plait_beta/storage.py": '''
        from pydantic import Field, SecretStr

        from plait.blocks import StorageBlock


        class BetaStorage(StorageBlock):
            """Bytes in a Beta bucket."""

            bucket: str = Field(description="The bucket.")
            token: SecretStr | None = Field(None, description="Access token.")
    ''',
    "plait_beta/tasks.py": '''
        from typing import Optional

        from plait import task

        from plait_beta.storage import BetaStorage


        @task
        async def upload(path: str, data: bytes, /, overwrite: bool = False, *, storage: Optional[BetaStorage] = None) -> int:
            """Upload bytes."""
            return len(data)
    ''',
    "plait_beta/plugin.py": """
        from plait.hookspecs import hookimpl

        from plait_beta import BetaStorage, upload


        @hookimpl
        def plait_register_blocks(register):
            register(BetaStorage)


        @hookimpl
        def plait_register_tasks(register):
            register(upload)


        @hookimpl
        def plait_notify(event):
            pass
    """,
}


def write_files(base: Path, files: dict[str, str]) -> None:
    for rel, body in files.items():
        target = base / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(body).lstrip("\n"), encoding="utf-8")


def make_root(base: Path, collections: dict[str, dict[str, str]]) -> Path:
    write_files(base, CORE)
    (base / "collections").mkdir(parents=True, exist_ok=True)
    for name, files in collections.items():
        write_files(base / "collections" / name, files)
    return base


def invoke(*args: str) -> object:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_root(tmp_path_factory.mktemp("checkout"), {"plait-alpha": ALPHA, "plait-beta": BETA})
    write_files(root, {"docs/collections/plait-beta.md": "# plait-beta\n"})
    build_registry(root)
    return root


@pytest.fixture(scope="module")
def document(fake_root: Path) -> dict:
    return json.loads((fake_root / "registry.json").read_text(encoding="utf-8"))


# -- build ----------------------------------------------------------------------------------------
def test_build_describes_collections_and_builtin(document: dict) -> None:
    Registry.model_validate(document)
    assert document["schema_version"] == 1
    assert document["generated_by"] == "plait registry build"
    assert document["plait"] == {"version": "0.1.0"}
    builtin = document["builtin"]
    assert builtin["distribution"] == "plait" and builtin["version"] == "0.1.0"
    assert [b["slug"] for b in builtin["blocks"]] == ["memo"]
    assert builtin["storage_schemes"] == ["memo"]
    assert builtin["entry_points"] == {"fake_builtin": "fake_builtin.plugin"}
    assert list(document["collections"]) == ["plait-alpha", "plait-beta"]

    alpha = document["collections"]["plait-alpha"]
    assert alpha["version"] == "0.1.0"
    assert alpha["description"] == "Alpha weather for plait flows."
    assert alpha["plait_range"] == ">=0.1,<0.2"  # lower bound first, whatever the order written
    assert alpha["dependencies"] == ["plait<0.2,>=0.1", "httpx>=0.27"]
    assert alpha["requires_python"] == ">=3.11" and alpha["license"] == "Apache-2.0"
    assert alpha["install"] == {"target": "./collections/plait-alpha", "pip": "plait-alpha==0.1.0"}
    assert alpha["directory"] == "collections/plait-alpha" and alpha["docs"] is None
    assert alpha["entry_points"] == {"plait_alpha": "plait_alpha.plugin"}
    assert alpha["hooks"] == ["plait_register_blocks", "plait_register_flows",
                              "plait_register_storage", "plait_register_tasks"]
    [block] = alpha["blocks"]
    assert block["slug"] == "alpha-credentials" and block["name"] == "Alpha Credentials"
    assert block["description"] == "Credentials for the Alpha API."
    assert block["import_path"] == "plait_alpha:AlphaCredentials"
    assert block["capabilities"] == ["credentials"] and block["secret_fields"] == ["api_key"]
    assert block["code_example"] == 'AlphaCredentials(api_key="k").save("alpha")'
    assert set(block["json_schema"]["properties"]) == {"api_key", "region"}
    [fetch] = alpha["tasks"]
    assert fetch["name"] == "fetch" and fetch["import_path"] == "plait_alpha:fetch"
    assert fetch["signature"] == (
        "(city: str, limit: int = 10, *, credentials: AlphaCredentials | None = None) -> list[dict[str, Any]]"
    )
    assert fetch["description"] == "Fetch the forecast for a city."
    assert fetch["example"] == 'fetch("Oslo", limit=3)'
    assert fetch["is_async"] is False and fetch["returns"] == "list[dict[str, Any]]"
    assert [(p["name"], p["kind"], p["default"], p["required"]) for p in fetch["parameters"]] == [
        ("city", "positional-or-keyword", None, True),
        ("limit", "positional-or-keyword", "10", False),
        ("credentials", "keyword-only", "None", False),
    ]
    [forecast] = alpha["flows"]
    assert forecast["name"] == "forecast-all" and forecast["signature"] == "(cities: list[str]) -> int"
    assert alpha["storage_schemes"] == ["alpha"]

    beta = document["collections"]["plait-beta"]
    assert beta["docs"] == "docs/collections/plait-beta.md"
    assert beta["requires_python"] is None and beta["license"] is None
    assert beta["plait_range"] == ">=0.1,<0.2"
    assert "plait_notify" in beta["hooks"]
    [storage] = beta["blocks"]
    assert storage["slug"] == "beta-storage" and storage["import_path"] == "plait_beta:BetaStorage"
    assert storage["capabilities"] == ["read-path", "write-path"] and storage["secret_fields"] == ["token"]
    [upload] = beta["tasks"]
    # real (not string) annotations are rendered without their module qualifiers
    assert upload["signature"] == (
        "(path: str, data: bytes, /, overwrite: bool = False, *, storage: Optional[BetaStorage] = None) -> int"
    )
    assert upload["is_async"] is True and upload["import_path"] == "plait_beta:upload"
    assert beta["flows"] == [] and beta["storage_schemes"] == []
    # the plugins were imported by the builder's child interpreter, never in this process
    assert "plait_alpha" not in sys.modules and "plait_beta" not in sys.modules


def test_build_is_deterministic(fake_root: Path, tmp_path: Path) -> None:
    first = (fake_root / "registry.json").read_bytes()
    summary = build_registry(fake_root, tmp_path / "again.json")
    again = (tmp_path / "again.json").read_bytes()
    assert summary["collections"] == ["plait-alpha", "plait-beta"]
    assert summary["blocks"] == 2 and summary["tasks"] == 2 and summary["flows"] == 1
    # targets are relative to where the file is written
    assert json.loads(again)["collections"]["plait-alpha"]["install"]["target"].endswith("/collections/plait-alpha")
    assert render(build_document(fake_root)).encode() == first
    assert first.endswith(b"}\n") and b"\r" not in first
    assert json.dumps(json.loads(first), indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n" == first
    assert build_registry(fake_root)["changed"] is False


def test_build_cli(fake_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = invoke("registry", "build", "--root", str(fake_root), "--output", str(out))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Wrote {out}: 2 collections (plait-alpha, plait-beta), 2 blocks, 2 tasks, 1 flow;")
    result = invoke("registry", "build", "--root", str(fake_root), "--output", str(out), "--json")
    assert json.loads(result.output)["changed"] is False


def test_build_errors_name_the_collection(tmp_path: Path) -> None:
    broken = dict(ALPHA, **{"plait_alpha/plugin.py": "import plait_vendor_sdk_not_installed\n"})
    root = make_root(tmp_path / "a", {"plait-alpha": broken})
    with pytest.raises(RegistryError) as excinfo:
        build_document(root)
    message = str(excinfo.value)
    assert "collection plait-alpha" in message and "plait_vendor_sdk_not_installed" in message
    assert "pip install -e ./collections/plait-alpha" in message
    result = invoke("registry", "build", "--root", str(root))
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith("Error: collection plait-alpha: cannot import its plugin module plait_alpha.plugin")

    renamed = make_root(tmp_path / "b", {"plait-other": ALPHA})
    with pytest.raises(RegistryError, match="distribution is named 'plait-alpha' but its directory is 'plait-other'"):
        build_document(renamed)

    no_range = dict(ALPHA, **{"pyproject.toml": ALPHA["pyproject.toml"].replace('"plait<0.2,>=0.1", ', "")})
    with pytest.raises(RegistryError, match="no dependency on plait"):
        build_document(make_root(tmp_path / "c", {"plait-alpha": no_range}))

    bad_entry = dict(ALPHA, **{"pyproject.toml": ALPHA["pyproject.toml"].replace('"plait_alpha.plugin"', '"plait_alpha.nope"')})
    with pytest.raises(RegistryError, match="its entry point plait_alpha names plait_alpha.nope, which is not in"):
        build_document(make_root(tmp_path / "d", {"plait-alpha": bad_entry}))

    plugin = textwrap.dedent(ALPHA["plait_alpha/plugin.py"]).replace("register(forecast_all)", "raise RuntimeError('boom')")
    raising = dict(ALPHA, **{"plait_alpha/plugin.py": plugin})
    with pytest.raises(RegistryError, match="hook plait_register_flows of plait_alpha raised RuntimeError: boom"):
        build_document(make_root(tmp_path / "e", {"plait-alpha": raising}))


# -- check ----------------------------------------------------------------------------------------
def test_check_passes_then_names_what_differs(fake_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    shutil.copytree(fake_root, root)
    assert check_registry(root).ok
    result = invoke("registry", "check", "--root", str(root))
    assert result.exit_code == 0 and "is up to date (2 collections)" in result.output

    pyproject = root / "collections" / "plait-beta" / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"', 'version = "0.2.0"'))
    checked = check_registry(root)
    assert not checked.ok
    assert 'collections.plait-beta.version: registry.json has "0.1.0", source has "0.2.0"' in checked.differences
    assert 'collections.plait-beta.install.pip: registry.json has "plait-beta==0.1.0", source has "plait-beta==0.2.0"' in checked.differences
    result = invoke("registry", "check", "--root", str(root))
    assert result.exit_code == 1
    assert "collections.plait-beta.version: registry.json has" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and last.endswith("(2 differences); run `plait registry build` and commit registry.json")
    result = invoke("registry", "check", "--root", str(root), "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["total"] == 2

    build_registry(root)
    assert check_registry(root).ok
    data = json.loads((root / "registry.json").read_text())
    (root / "registry.json").write_text(json.dumps(data, indent=4, sort_keys=True) + "\n")  # same values
    reformatted = check_registry(root)
    assert not reformatted.ok and reformatted.differences == [] and "formatting differs" in reformatted.message

    (root / "registry.json").write_text('{\n  "schema_version": 1,\n  oops\n}\n')
    with pytest.raises(RegistryError, match=r"invalid JSON at line 3, column 3"):
        check_registry(root)


# -- load -----------------------------------------------------------------------------------------
def test_load_reports_line_column_and_json_path(document: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{\n  "schema_version": 1,\n  "collections": {,}\n}\n')
    with pytest.raises(RegistryError, match=r"bad\.json: invalid JSON at line 3, column 19: Expecting property name"):
        load_registry(bad_json)
    result = invoke("collection", "ls", "--registry", str(bad_json))
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "invalid JSON at line 3, column 19" in result.output

    invalid = json.loads(json.dumps(document))
    del invalid["collections"]["plait-alpha"]["blocks"][0]["slug"]
    invalid["collections"]["plait-beta"]["tasks"][0]["is_async"] = "sometimes"
    path = tmp_path / "invalid.json"
    path.write_text(json.dumps(invalid))
    with pytest.raises(RegistryError) as excinfo:
        load_registry(path)
    assert "invalid.json: collections.plait-alpha.blocks[0].slug: Field required" in str(excinfo.value)
    assert "collections.plait-beta.tasks[0].is_async: Input should be a valid boolean" in str(excinfo.value)

    newer = dict(document, schema_version=2)
    path.write_text(json.dumps(newer))
    with pytest.raises(RegistryError, match="uses schema version 2; this plait reads version 1: upgrade plait"):
        load_registry(path)

    good = tmp_path / "good.json"
    good.write_text(json.dumps(document))
    monkeypatch.setenv("PLAIT_REGISTRY", good.as_uri())
    assert load_registry().path == good.resolve()
    monkeypatch.setenv("PLAIT_REGISTRY", "https://example.invalid/registry.json")
    with pytest.raises(RegistryError, match="only local paths and file:// URLs"):
        load_registry()
    monkeypatch.delenv("PLAIT_REGISTRY")
    monkeypatch.setattr("plait.registry._model._default_location", lambda: None)
    with pytest.raises(RegistryError, match="no registry.json found: pass --registry PATH, set PLAIT_REGISTRY"):
        load_registry()


# -- collection ls / info / install ---------------------------------------------------------------
def fake_dist(site: Path, name: str, version: str, requires: list[str], entry_points: str = "") -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", f"Summary: {name} summary"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    if entry_points:
        (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def listing(document: dict, fake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry with four collections next to fake_root's sources, and installed metadata:
    alpha current, beta excluding this plait, delta older than listed, gamma absent, and an
    unlisted plugin whose module does not even exist."""
    doc = json.loads(json.dumps(document))
    for name in ("plait-gamma", "plait-delta"):
        entry = json.loads(json.dumps(doc["collections"]["plait-alpha"]))
        entry.update(name=name, install={"target": f"./collections/{name}", "pip": f"{name}==0.1.0"})
        doc["collections"][name] = entry
    registry = fake_root / "listing.json"
    registry.write_text(render(doc))
    site = tmp_path / "site"
    fake_dist(site, "plait-alpha", "0.1.0", ["plait<0.2,>=0.1", "httpx>=0.27"])
    fake_dist(site, "plait-beta", "0.1.0", ["plait<0.0.1"])
    fake_dist(site, "plait-delta", "0.0.5", ["plait>=0.1"])
    fake_dist(site, "plait-stray", "1.0.0", ["plait>=0.1", "plait-extra; extra == 'x'"],
              "[plait.plugins]\nstray = stray_plugin_that_does_not_exist.plugin\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PLAIT_REGISTRY", str(registry))
    return registry


def test_collection_ls_statuses(listing: Path) -> None:
    expected = {
        "plait-alpha": "installed",
        "plait-beta": "incompatible",
        "plait-delta": "outdated",
        "plait-gamma": "not installed",
        "plait-stray": "unlisted",
    }
    rows = {row["name"]: row for row in collection_ls()}
    # other plait plugins installed in this environment (the real collections) are unlisted too
    assert {name: row["status"] for name, row in rows.items() if name in expected} == expected
    assert {row["status"] for name, row in rows.items() if name not in expected} <= {"unlisted"}
    assert list(rows)[:4] == ["plait-alpha", "plait-beta", "plait-delta", "plait-gamma"]  # registry first
    assert rows["plait-beta"]["installed_plait_range"] == "<0.0.1"
    assert rows["plait-delta"]["installed_version"] == "0.0.5" and rows["plait-delta"]["registry_version"] == "0.1.0"
    assert rows["plait-gamma"]["installed_version"] is None
    assert rows["plait-stray"]["registry_version"] is None and rows["plait-stray"]["installed_version"] == "1.0.0"
    assert "stray_plugin_that_does_not_exist" not in sys.modules and "plait_alpha" not in sys.modules

    result = invoke("collection", "ls")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["NAME", "REGISTRY", "INSTALLED", "STATUS", "PLAIT", "DESCRIPTION"]
    table = {cells[0]: cells for cells in (re.split(r"\s{2,}", line) for line in lines[1:])}
    assert table["plait-beta"][:4] == ["plait-beta", "0.1.0", "0.1.0", "incompatible"]
    assert table["plait-gamma"][:4] == ["plait-gamma", "0.1.0", "-", "not installed"]
    assert table["plait-stray"][:4] == ["plait-stray", "-", "1.0.0", "unlisted"]
    assert json.loads(invoke("collection", "ls", "--json").output) == collection_ls()


def test_collection_info_and_suggestions(listing: Path) -> None:
    info = collection_info("alpha")  # short for plait-alpha
    assert info["name"] == "plait-alpha" and info["installed"]["status"] == "installed"
    assert [t["name"] for t in info["tasks"]] == ["fetch"]
    result = invoke("collection", "info", "plait-alpha")
    assert result.exit_code == 0, result.output
    out = result.output
    assert re.search(r"^Plait\s+>=0\.1,<0\.2$", out, re.M)
    assert "plait collection install plait-alpha" in out and "pip install plait-alpha==0.1.0" in out
    assert "Blocks (1)" in out and re.search(r"alpha-credentials\s+Alpha Credentials\s+credentials\s+api_key", out)
    assert "Tasks (1)" in out and "(city: str, limit: int = 10, *, credentials: AlphaCredentials | None = None)" in out
    assert "Flows (1)" in out and "forecast-all" in out
    assert "alpha://" in out
    assert 'AlphaCredentials(api_key="k").save("alpha")' in out and 'fetch("Oslo", limit=3)' in out
    assert json.loads(invoke("collection", "info", "alpha", "--json").output)["version"] == "0.1.0"

    with pytest.raises(RegistryError, match=r"no collection named 'plait-alpah' in .*; did you mean plait-alpha\?"):
        collection_info("plait-alpah")
    result = invoke("collection", "info", "gama")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "did you mean plait-gamma?" in result.output and "`plait collection ls`" in result.output
    result = invoke("collection", "info", "zzzzzz")
    assert result.exit_code == 1 and "did you mean" not in result.output and "plait collection ls" in result.output


def test_install_refuses_an_incompatible_range_and_dry_runs(listing: Path, fake_root: Path, tmp_path: Path) -> None:
    doc = json.loads(listing.read_text())
    doc["collections"]["plait-alpha"]["plait_range"] = ">=0.3,<0.4"
    strict = fake_root / "strict.json"
    strict.write_text(render(doc))
    expected = "plait-alpha 0.1.0 supports plait>=0.3,<0.4 but plait 0.1.0 is installed; upgrade plait or pick an older plait-alpha"
    with pytest.raises(RegistryError) as excinfo:
        collection_install_plan("plait-alpha", str(strict))
    assert str(excinfo.value) == expected
    result = invoke("collection", "install", "plait-alpha", "--registry", str(strict), "--dry-run")
    assert result.exit_code == 1 and result.output == f"Error: {expected}\n"

    result = invoke("collection", "install", "beta", "--dry-run")
    target = fake_root / "collections" / "plait-beta"
    assert result.exit_code == 0, result.output
    assert result.output == f"Would run: {sys.executable} -m pip install {target}\n"
    result = invoke("collection", "install", "beta", "--dry-run", "--editable")
    assert result.output == f"Would run: {sys.executable} -m pip install -e {target}\n"

    elsewhere = tmp_path / "registry.json"  # away from the checkout: the sources are not next to it
    shutil.copy(listing, elsewhere)
    plan = collection_install_plan("plait-beta", str(elsewhere))
    assert plan["source"] == "index" and plan["command"][-1] == "plait-beta==0.1.0"
    assert "./collections/plait-beta not found next to" in plan["note"]
    result = invoke("collection", "install", "plait-beta", "--registry", str(elsewhere), "--dry-run", "-e")
    assert result.exit_code == 1 and "--editable needs the source of plait-beta" in result.output


def test_run_command_streams_every_line() -> None:
    lines: list[str] = []
    code = run_command([sys.executable, "-c", "import sys; print('one'); print('two', file=sys.stderr); sys.exit(3)"],
                       lines.append)
    assert code == 3 and lines == ["one", "two"]


# -- the guide's example collection ---------------------------------------------------------------
def test_writing_a_collection_guide_example(tmp_path: Path) -> None:
    files = {m["path"]: m["body"] for m in FILE_BLOCK.finditer(GUIDE.read_text(encoding="utf-8"))}
    assert {"plait-hello/pyproject.toml", "plait-hello/plait_hello/plugin.py",
            "plait-hello/tests/test_hello_block_standards.py"} <= set(files)
    root = make_root(tmp_path / "checkout", {})
    for rel, body in files.items():
        target = root / "collections" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")
    hello = root / "collections" / "plait-hello"
    (hello / "plait_hello" / "py.typed").touch()
    # section 7 of the guide has you write README.md (the pyproject's readme): the registry build needs it to build the wheel
    (hello / "README.md").write_text("# plait-hello\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PYTHONPATH=str(hello), PLAIT_HOME=str(tmp_path / "home"), PLAIT_LOG_TO_CONSOLE="false")
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib", "tests"],
        cwd=hello, env=env, capture_output=True, text=True, timeout=300,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "3 passed" in tested.stdout

    entry = build_document(root)["collections"]["plait-hello"]
    assert entry["plait_range"] == ">=0.1,<0.2" and entry["install"]["pip"] == "plait-hello==0.1.0"
    assert [b["slug"] for b in entry["blocks"]] == ["greeting"]
    [greet] = entry["tasks"]
    assert greet["signature"] == "(name: str, greeting: Greeting | None = None) -> str"
    assert greet["import_path"] == "plait_hello:greet" and greet["description"] == "Greet someone, politely by default."
    assert [f["name"] for f in entry["flows"]] == ["welcome"]


def test_collection_docs_links_resolve() -> None:
    """docs/collections/*.md link to pages and headings that exist; the index links every
    collection's page (a page may be missing only while its collection does not exist)."""
    docs = ROOT / "docs"
    existing = {p.parent.name for p in (ROOT / "collections").glob("*/pyproject.toml")}
    index = (docs / "collections" / "index.md").read_text(encoding="utf-8")
    for name in existing:
        assert f"]({name}.md)" in index, f"docs/collections/index.md does not link {name}.md"
    for page in (docs / "collections" / "index.md", GUIDE):
        text = page.read_text(encoding="utf-8")
        for language in re.findall(r"^```(\S*)$", text, flags=re.M)[::2]:
            assert language in {"python", "text", "console", "toml", "json"}, f"{page.name}: ```{language}"
        prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if "://" in target:
                continue
            rel, _, anchor = target.partition("#")
            linked = (page.parent / rel).resolve() if rel else page
            if linked.parent == docs / "collections" and linked.stem.startswith("plait-") and linked.stem not in existing:
                continue  # the page of a collection that is not written yet
            assert linked.is_file(), f"{page.name} links to missing {rel}"
            if anchor:
                headings = re.findall(r"^#{1,6} (.+)$", linked.read_text(encoding="utf-8"), flags=re.M)
                slugs = {re.sub(r"[^\w\- ]", "", re.sub(r"[`*_]", "", h.strip().lower())).replace(" ", "-") for h in headings}
                assert anchor in slugs, f"{page.name} links to {target}: no such heading"


# -- the real repository (what CI runs) -----------------------------------------------------------
def test_cli_lists_the_groups() -> None:
    out = invoke("--help").output
    assert "collection" in out and "registry" in out


def test_real_registry_is_current() -> None:
    done = subprocess.run([str(PLAIT), "registry", "check"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    loaded = load_registry(ROOT / "registry.json")
    on_disk = sorted(p.parent.name for p in (ROOT / "collections").glob("*/pyproject.toml"))
    assert sorted(loaded.registry.collections) == on_disk
    listed = subprocess.run([str(PLAIT), "collection", "ls", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert {row["name"] for row in json.loads(listed.stdout)} >= set(on_disk)


# -- artifacts and the compatibility matrix ---------------------------------------------------------
def test_artifacts_extras_and_a_changed_wheel_fail_the_check(fake_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    shutil.copytree(fake_root, root)
    alpha = json.loads((root / "registry.json").read_text())["collections"]["plait-alpha"]
    wheel, sdist = alpha["artifacts"]
    assert wheel["file"] == "plait_alpha-0.1.0-py3-none-any.whl" and re.fullmatch(r"[0-9a-f]{64}", wheel["sha256"])
    assert sdist == {"file": "plait_alpha-0.1.0.tar.gz", "kind": "sdist", "sha256": None}
    assert alpha["extras"] == {} and alpha["tested_with"] == []
    # plait-beta declares no [build-system]: no artifacts are recorded for it
    assert json.loads((root / "registry.json").read_text())["collections"]["plait-beta"]["artifacts"] == []

    module = root / "collections" / "plait-alpha" / "plait_alpha" / "__init__.py"
    module.write_text(module.read_text() + "\n# a change the wheel carries\n")
    checked = check_registry(root)
    assert not checked.ok and len(checked.differences) == 1
    assert checked.differences[0].startswith("collections.plait-alpha.artifacts[0].sha256: registry.json has ")


def test_record_pass_fills_tested_with_per_collection_version(fake_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    shutil.copytree(fake_root, root)
    result = invoke("registry", "record-pass", "alpha", "--plait-version", "0.1.2", "--root", str(root))
    assert result.exit_code == 0, result.output
    assert result.output == "Recorded plait-alpha 0.1.0 passed on plait 0.1.2 (tested with 0.1.2).\n"
    result = invoke("registry", "record-pass", "--all", "--root", str(root))  # the running plait
    assert result.exit_code == 0, result.output
    again = invoke("registry", "record-pass", "plait-alpha", "--plait-version", "0.1.2", "--root", str(root))
    assert again.output.startswith("Already recorded: plait-alpha 0.1.0 passed on plait 0.1.2")
    assert json.loads((root / "tested_with.json").read_text()) == {
        "plait-alpha": {"0.1.0": ["0.1.0", "0.1.2"]}, "plait-beta": {"0.1.0": ["0.1.0"]},
    }
    assert not check_registry(root).ok  # registry.json is rebuilt after recording
    build_registry(root)
    assert load_registry(root / "registry.json").registry.collections["plait-alpha"].tested_with == ["0.1.0", "0.1.2"]

    # a new version of the collection starts untested
    pyproject = root / "collections" / "plait-alpha" / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"', 'version = "0.2.0"'))
    assert build_document(root)["collections"]["plait-alpha"]["tested_with"] == []

    bad = invoke("registry", "record-pass", "plait-nope", "--root", str(root))
    assert bad.exit_code == 1 and "no collection 'plait-nope' in" in bad.output and "have: plait-alpha, plait-beta" in bad.output
    bad = invoke("registry", "record-pass", "alpha", "--plait-version", "latest", "--root", str(root))
    assert bad.exit_code == 1 and "--plait-version 'latest' is not a version" in bad.output


def test_real_registry_records_every_collections_wheel() -> None:
    for name, entry in load_registry(ROOT / "registry.json").registry.collections.items():
        kinds = [(a.kind, a.sha256 is not None) for a in entry.artifacts]
        assert kinds == [("wheel", True), ("sdist", False)], name
        assert entry.artifacts[0].file.startswith(f"{name.replace('-', '_')}-{entry.version}-")
