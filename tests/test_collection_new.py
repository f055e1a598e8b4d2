"""`plait collection new plait-NAME`: the generated collection passes its own tests as generated.

It is installed for real but offline and without touching this environment: its wheel is
built by plait's wheelhouse builder and pip-installed (--no-deps --no-index) into a
--target directory inside tmp_path, which the collection's pytest run gets on PYTHONPATH;
plait and pytest come from this environment. tmp_path cleans it all up.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from plait.cli import cli
from plait.registry import RegistryError
from plait.registry._build import describe_collection
from plait.registry._scaffold import default_plait_range, scaffold_collection
from plait.registry._wheelhouse import build_project


def invoke(*args: str) -> object:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_new_collection_passes_its_own_suite_once_installed(tmp_path: Path) -> None:
    result = invoke("collection", "new", "plait-weather-api", "--dir", str(tmp_path / "src"))
    assert result.exit_code == 0, result.output
    collection = tmp_path / "src" / "plait-weather-api"
    assert f"Created {collection} (9 files)" in result.output
    # the registry build's own description of it, run by `new`
    assert ("Registry check: plait-weather-api 0.1.0, plait>=0.1,<0.2, blocks weather-api-credentials, "
            "tasks weather_api_hello.") in result.output
    project = tomllib.loads((collection / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["plait.plugins"] == {"plait_weather_api": "plait_weather_api.plugin"}
    assert (collection / "docs" / "plait-weather-api.md").is_file()  # no checkout around it: its own docs/

    [wheel, _sdist] = build_project(collection, tmp_path / "dist")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(tmp_path / "dist" / wheel["file"])], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PYTHONPATH=str(site), PLAIT_HOME=str(tmp_path / "home"), PLAIT_LOG_TO_CONSOLE="false")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--import-mode=importlib", "tests"],
        cwd=collection, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for test_id in ("test_plugin_is_discovered_and_healthy", "test_installed_metadata_matches_pyproject",
                    "test_block_conforms[weather-api-credentials]", "test_docs_examples_run[README.md]",
                    "test_docs_examples_run[plait-weather-api.md]", "test_weather_api_hello_uses_the_credentials"):
        assert re.search(rf"::{re.escape(test_id)} PASSED", done.stdout), (test_id, done.stdout)

    # and the suite is not a rubber stamp: a task the plugin stops registering fails it
    # (run from the collection's directory, the source package is the one imported)
    plugin = collection / "plait_weather_api" / "plugin.py"
    plugin.write_text(plugin.read_text().replace("return [weather_api_hello]", "return []"))
    broken = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib", "tests"],
        cwd=collection, env=env, capture_output=True, text=True, timeout=300,
    )
    assert broken.returncode == 1 and "FAILED" in broken.stdout, broken.stdout
    assert "weather_api_hello" in broken.stdout


def test_new_inside_a_checkout_puts_the_docs_page_in_docs_collections(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "plait"\nversion = "0.1.0"\n')
    (tmp_path / "collections").mkdir()
    summary = scaffold_collection("plait-acme", tmp_path / "collections")
    assert summary["docs"] == str(tmp_path / "docs" / "collections" / "plait-acme.md")
    test_file = (tmp_path / "collections" / "plait-acme" / "tests" / "test_acme_collection.py").read_text()
    assert 'docs = ["README.md", "../../docs/collections/plait-acme.md"]' in test_file
    entry = describe_collection(tmp_path / "collections" / "plait-acme")
    assert entry["directory"] == "collections/plait-acme" and entry["docs"] == "docs/collections/plait-acme.md"
    assert [a["kind"] for a in entry["artifacts"]] == ["wheel", "sdist"] and entry["artifacts"][0]["sha256"]
    assert [b["secret_fields"] for b in entry["blocks"]] == [["api_key"]]


def test_new_refuses_bad_names_and_existing_directories(tmp_path: Path) -> None:
    for bad in ("weather", "plait-Weather", "plait-", "plait_weather"):
        with pytest.raises(RegistryError, match="is not a collection name: use plait- and lowercase words"):
            scaffold_collection(bad, tmp_path)
    scaffold_collection("plait-once", tmp_path)
    result = invoke("collection", "new", "plait-once", "--dir", str(tmp_path), "--no-check")
    assert result.exit_code == 1 and f"{tmp_path}/plait-once already exists" in result.output
    assert default_plait_range("0.1.3") == ">=0.1,<0.2" and default_plait_range("1.4.0") == ">=1.4,<2"
