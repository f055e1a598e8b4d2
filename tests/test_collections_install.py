"""Collections as wheels: `plait collection build`, then `plait collection install` from the
wheelhouse into a fresh virtual environment, with nothing downloaded.

The wheelhouse is built once per module by the real command. The dependencies of plait and
plait-aws (pydantic, boto3, ...) cannot be downloaded in a test, so they are packed back into
wheels from what this environment has installed (each distribution's RECORD: its files and
its original WHEEL tags); the fresh venv then installs everything with --no-index. The
checks that need no pip run (sha256, extras, plait range, editable, downgrade) run against
this environment with --dry-run.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from plait.cli import cli
from plait.registry import RegistryError, build_registry
from plait.registry._wheelhouse import build_project, read_index, write_index

ROOT = Path(__file__).resolve().parents[1]
PLAIT = Path(sys.executable).with_name("plait")


def source_version(name: str) -> str:
    """The version in the collection's pyproject (what the wheelhouse builds)."""
    return str(tomllib.loads((ROOT / "collections" / name / "pyproject.toml").read_text())["project"]["version"])


AWS_VERSION = source_version("plait-aws")


# -- packing installed distributions back into wheels ---------------------------------------------
def _closure(names: list[str], extras: dict[str, set[str]] | None = None) -> list[metadata.Distribution]:
    """The installed distributions ``names`` need (markers evaluated, requested extras followed;
    ``extras``: those asked for of the named ones)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [(n, frozenset((extras or {}).get(n, ()))) for n in names]
    while todo:
        name, extras = todo.pop()
        dist = metadata.distribution(name)
        key = str(canonicalize_name(name))
        first = key not in seen
        seen[key] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            wanted = any(req.marker.evaluate({**default_environment(), "extra": e}) for e in extras | {""}) \
                if req.marker else True
            if wanted and (first or req.marker):
                todo.append((req.name, frozenset(req.extras)))
    return list(seen.values())


def _tags(wheel_file: str) -> str:
    tags = [line.split(":", 1)[1].strip() for line in wheel_file.splitlines() if line.startswith("Tag:")]
    parts = [sorted({t.split("-")[i] for t in tags}) for i in range(3)]
    return "-".join(".".join(p) for p in parts)


def pack_installed(dist: metadata.Distribution, out: Path) -> Path:
    """A wheel of the installed ``dist``: its files inside site-packages, and a fresh RECORD."""
    files = [f for f in dist.files or [] if not str(f).startswith("..") and "__pycache__" not in str(f)]
    info = next(f for f in files if str(f).endswith(".dist-info/METADATA")).parent
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"]).lower()
    target = out / f"{name}-{dist.version}-{_tags(dist.read_text('WHEEL') or 'Tag: py3-none-any')}.whl"
    skip = {f"{info}/{n}" for n in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")}
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel in files:
            if str(rel) in skip:
                continue
            data = Path(dist.locate_file(rel)).read_bytes()
            archive.writestr(str(rel), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            writer.writerow([str(rel), f"sha256={digest}", len(data)])
        writer.writerow([f"{info}/RECORD", "", ""])
        archive.writestr(f"{info}/RECORD", record.getvalue())
    return target


def simple_index(house: Path, out: Path) -> Path:
    """A PEP 503 "simple" index of the wheels in ``house``, as static files."""
    for wheel in house.glob("*.whl"):
        project = out / str(canonicalize_name(wheel.name.split("-")[0]))
        project.mkdir(parents=True, exist_ok=True)
        shutil.copy(wheel, project)
    for project in out.iterdir():
        links = "".join(f'<a href="{w.name}">{w.name}</a>\n' for w in sorted(project.glob("*.whl")))
        (project / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    return out


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheelhouse")
    started = time.monotonic()
    built = subprocess.run([str(PLAIT), "collection", "build", "--out", str(out), "--json"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    summary = json.loads(built.stdout)
    print(f"wheelhouse built in {time.monotonic() - started:.1f}s")
    assert {a["name"] for a in summary["artifacts"]} >= {"plait", "plait-aws", "plait-dbt"}
    return out


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """registry.json as built from the checkout now (the committed one may lag behind edits)."""
    path = tmp_path_factory.mktemp("registry") / "registry.json"
    build_registry(ROOT, path)
    return path


@pytest.fixture(scope="module")
def deps(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deps")
    ours = {"plait", "plait-aws", "plait-sqlalchemy"}
    for dist in _closure(sorted(ours), extras={"plait-sqlalchemy": {"postgres"}}):
        if str(canonicalize_name(dist.metadata["Name"])) not in ours:
            pack_installed(dist, out)
    return out


def invoke(*args: str) -> object:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


# -- the wheelhouse -------------------------------------------------------------------------------
def test_build_writes_an_index_with_every_artifact_and_sha256(wheelhouse: Path) -> None:
    index = read_index(wheelhouse)
    on_disk = sorted(p.name for p in wheelhouse.iterdir() if p.suffix in {".whl", ".gz"})
    assert sorted(index) == on_disk
    collections = sorted(p.parent.name for p in (ROOT / "collections").glob("*/pyproject.toml"))
    for name in ["plait", *collections]:
        kinds = sorted(e["kind"] for e in index.values() if e["name"] == name)
        assert kinds == ["sdist", "wheel"], name
    for file, entry in index.items():
        assert hashlib.sha256((wheelhouse / file).read_bytes()).hexdigest() == entry["sha256"]


def test_wheels_are_reproducible_and_match_the_registry(wheelhouse: Path, tmp_path: Path) -> None:
    # SOURCE_DATE_EPOCH set by a caller must not change the bytes: the build pins it
    again = build_project(ROOT / "collections" / "plait-aws", tmp_path)
    os.environ["SOURCE_DATE_EPOCH"] = "1700000000"
    try:
        third = build_project(ROOT / "collections" / "plait-aws", tmp_path / "third")
    finally:
        del os.environ["SOURCE_DATE_EPOCH"]
    index = read_index(wheelhouse)
    assert again[0]["sha256"] == third[0]["sha256"] == index[again[0]["file"]]["sha256"]
    assert again[1]["sha256"] == third[1]["sha256"] == index[again[1]["file"]]["sha256"]
    from plait.registry import build_document

    entry = build_document(ROOT)["collections"]["plait-aws"]
    assert entry["artifacts"] == [
        {"file": again[0]["file"], "kind": "wheel", "sha256": again[0]["sha256"]},
        {"file": again[1]["file"], "kind": "sdist", "sha256": None},
    ]
    assert set(entry["extras"]) == {"test"}


# -- the checks, against this environment (dry runs) ----------------------------------------------
def test_install_refuses_a_tampered_wheel(wheelhouse: Path, tmp_path: Path) -> None:
    copy = tmp_path / "wh"
    shutil.copytree(wheelhouse, copy)
    wheel = copy / f"plait_sqlalchemy-{source_version('plait-sqlalchemy')}-py3-none-any.whl"
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    result = invoke("collection", "install", "plait-sqlalchemy", "--find-links", str(copy), "--dry-run", "--force")
    assert result.exit_code == 1
    assert f"refusing to install {wheel.name}: its sha256 is " in result.output
    assert f"but {copy}/index.json records" in result.output

    (copy / "index.json").unlink()
    result = invoke("collection", "install", "plait-sqlalchemy", "--find-links", str(copy), "--dry-run")
    assert result.exit_code == 1 and "has no index.json, so its artifacts cannot be verified" in result.output


def test_install_checks_extras_versions_editable_installs(wheelhouse: Path, registry: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAIT_REGISTRY", str(registry))
    dbt = source_version("plait-dbt")
    ok = invoke("collection", "install", "plait-dbt[duckdb]", "--find-links", str(wheelhouse), "--dry-run", "--force")
    assert ok.exit_code == 0, ok.output
    assert ok.output.strip().endswith(f"{wheelhouse}/plait_dbt-{dbt}-py3-none-any.whl[duckdb]'")
    bad = invoke("collection", "install", "plait-dbt[duck]", "--find-links", str(wheelhouse), "--dry-run", "--force")
    assert bad.exit_code == 1
    assert f"plait-dbt {dbt} has no extra duck; the extras it declares: duckdb, postgres, snowflake, test" in bad.output
    ok = invoke("collection", "install", "plait-sqlalchemy[postgres]", "--find-links", str(wheelhouse), "--dry-run", "--force")
    assert ok.exit_code == 0 and "[postgres]'" in ok.output

    missing = invoke("collection", "install", "plait-aws==9.9.9", "--find-links", str(wheelhouse), "--dry-run")
    assert missing.exit_code == 1
    assert f"no wheel of plait-aws==9.9.9 in {wheelhouse}/index.json; it has plait-aws {AWS_VERSION}" in missing.output

    # this environment's plait-aws is the checkout's, editable: never replaced silently
    editable = invoke("collection", "install", "plait-aws", "--find-links", str(wheelhouse), "--dry-run")
    assert editable.exit_code == 1
    assert (f"plait-aws {AWS_VERSION} is installed in editable mode from {ROOT}/collections/plait-aws; "
            f"installing plait-aws {AWS_VERSION} would replace it: pass --force") in editable.output
    in_checkout = invoke("collection", "install", "aws", "--dry-run", "--registry", str(ROOT / "registry.json"))
    assert in_checkout.exit_code == 1 and "is installed in editable mode" in in_checkout.output
    assert invoke("collection", "install", "aws", "--dry-run", "--editable", "--registry", str(ROOT / "registry.json")).exit_code == 0

    # the registry's sha256 is checked too: a wheel another source built is refused
    doc = json.loads(registry.read_text())
    doc["collections"]["plait-gcp"]["artifacts"][0]["sha256"] = "0" * 64
    other = registry.with_name("other.json")
    other.write_text(json.dumps(doc))
    refused = invoke("collection", "install", "plait-gcp", "--find-links", str(wheelhouse), "--dry-run", "--force",
                     "--registry", str(other))
    assert refused.exit_code == 1
    assert f"but the registry records {'0' * 64} for plait-gcp" in refused.output


# -- a fresh virtual environment, offline ---------------------------------------------------------
def _variant(tmp: Path, version: str, plait_range: str) -> Path:
    """plait-aws's source with another version and plait range."""
    source = tmp / f"plait-aws-{version}"
    shutil.copytree(ROOT / "collections" / "plait-aws", source, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    pyproject = source / "pyproject.toml"
    text = re.sub(r'^version = ".*"$', f'version = "{version}"', pyproject.read_text(), flags=re.M)
    pyproject.write_text(re.sub(r'"plait>=[^"]*"', f'"plait{plait_range}"', text))
    return source


@pytest.mark.slow
def test_fresh_venv_installs_from_the_wheelhouse_offline(wheelhouse: Path, deps: Path, registry: Path,
                                                         tmp_path: Path) -> None:
    house = tmp_path / "house"
    shutil.copytree(wheelhouse, house)
    for wheel in deps.iterdir():
        shutil.copy(wheel, house)
    # two more versions of plait-aws: a newer one, and one that needs a plait that does not exist
    index = read_index(house)
    for version, plait_range in (("0.1.1", ">=0.1,<0.2"), ("0.9.0", ">=0.9,<1.0")):
        for artifact in build_project(_variant(tmp_path, version, plait_range), house):
            index[artifact.pop("file")] = artifact
    write_index(house, index)

    venv = tmp_path / "venv"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # no pip configuration of this machine (its find-links, extra indexes, constraints) applies
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLAIT_", "PIP_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PLAIT_HOME=str(tmp_path / "home"))
    plait_wheel = next(house.glob("plait-*.whl"))
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index",
                           "--find-links", str(house), str(plait_wheel)],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"fresh venv with plait in {time.monotonic() - started:.1f}s")

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(venv / "bin" / "plait"), "collection", "install", *args],
                              env={**env, **extra}, cwd=tmp_path, capture_output=True, text=True, timeout=300)

    def install(*args: str) -> subprocess.CompletedProcess[str]:
        return run(*args, "--find-links", str(house), "--no-index", PIP_NO_INDEX="1")

    # first from a package index (a PEP 503 index over file://), verified by the registry's sha256
    simple = simple_index(house, tmp_path / "simple")
    started = time.monotonic()
    first = run(f"plait-aws=={AWS_VERSION}", "--registry", str(registry), "--index-url", simple.as_uri())
    assert first.returncode == 0, first.stdout + first.stderr
    print(f"plait collection install plait-aws in {time.monotonic() - started:.1f}s: {first.stdout.splitlines()[-1]}")
    assert first.stdout.splitlines()[-1].startswith(f"installed plait-aws {AWS_VERSION}; also installed ")
    assert "boto3 " in first.stdout.splitlines()[-1] and " pip download --no-deps" in first.stdout
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import plait_aws, plait; print(plait_aws.__file__)"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0 and str(venv) in probe.stdout, probe.stderr

    # the same index, with a wheel that is not the one registry.json records
    tampered = next((simple / "plait-aws").glob(f"plait_aws-{AWS_VERSION}-*.whl"))
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    refused = run(f"plait-aws=={AWS_VERSION}", "--registry", str(registry), "--index-url", simple.as_uri())
    assert refused.returncode == 1
    assert f"Error: refusing to install {tampered.name}: sha256 " in refused.stderr
    assert "but the registry records" in refused.stderr

    again = install(f"plait-aws=={AWS_VERSION}")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.splitlines()[-1] == f"plait-aws {AWS_VERSION} is already installed"

    upgraded = install("plait-aws==0.1.1")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert upgraded.stdout.splitlines()[-1] == f"upgraded plait-aws from {AWS_VERSION} to 0.1.1"

    down = install(f"plait-aws=={AWS_VERSION}")
    assert down.returncode == 1
    assert f"Error: plait-aws 0.1.1 is installed, newer than {AWS_VERSION}; pass --force to downgrade it" in down.stderr + down.stdout
    forced = install(f"plait-aws=={AWS_VERSION}", "--force")
    assert forced.returncode == 0 and forced.stdout.splitlines()[-1] == f"downgraded plait-aws from 0.1.1 to {AWS_VERSION}"

    # an extra: the collection and what the extra adds, from the wheelhouse
    extra = install("plait-sqlalchemy[postgres]")
    assert extra.returncode == 0, extra.stdout + extra.stderr
    said = extra.stdout.splitlines()[-1]
    assert said.startswith("installed plait-sqlalchemy ") and "psycopg" in said, said
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import plait_sqlalchemy, psycopg; print(psycopg.__file__)"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0 and str(venv) in probe.stdout, probe.stderr

    newest = install("plait-aws")  # the newest wheel there needs plait 0.9: refused, naming both
    assert newest.returncode == 1
    assert "plait-aws 0.9.0 supports plait>=0.9,<1.0 but plait 0.1.0 is installed" in newest.stderr + newest.stdout


def test_registry_error_is_a_plait_error() -> None:
    from plait.exceptions import PlaitError

    assert issubclass(RegistryError, PlaitError)
