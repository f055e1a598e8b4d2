"""Fixtures: a real Cloud Storage emulator (gcp-storage-emulator, over HTTP on 127.0.0.1, one
per test session) and Google settings isolated from the machine's own (GOOGLE_* variables,
gcloud's configuration, the GCE metadata server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plait.testing import free_port

PROJECT = "plait-test"
_GOOGLE_ENV = ("GOOGLE_", "GCLOUD_", "CLOUDSDK_", "GCE_", "STORAGE_EMULATOR_HOST", "API_ENDPOINT_OVERRIDE")

# google.auth reads these when it is first imported: set before any test imports it, so the
# default chain never asks a real metadata server (nor trusts /sys/class/dmi on a GCE host).
os.environ["NO_GCE_CHECK"] = "true"
os.environ["GCE_METADATA_HOST"] = "127.0.0.1:9"
os.environ["GCE_METADATA_IP"] = "127.0.0.1:9"


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a gcp-storage-emulator process on a free port of 127.0.0.1 (in memory)."""
    port = free_port()
    log = tmp_path_factory.mktemp("gcs-emulator") / "emulator.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port),
             "--in-memory", "--quiet"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gcp-storage-emulator did not start on {url}:\n{log.read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(autouse=True)
def isolated_gcp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No GOOGLE_* variable, gcloud configuration or metadata server of this machine leaks in."""
    from plait_gcp import clear_client_cache

    for name in list(os.environ):
        if name.startswith(_GOOGLE_ENV) and name not in ("GCE_METADATA_HOST", "GCE_METADATA_IP"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud-config"))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    clear_client_cache()


@pytest.fixture
def gcs_env(monkeypatch: pytest.MonkeyPatch, gcs_endpoint: str) -> dict[str, str]:
    """google-cloud-storage's own emulator switch (STORAGE_EMULATOR_HOST) and a project."""
    values = {"STORAGE_EMULATOR_HOST": gcs_endpoint, "GOOGLE_CLOUD_PROJECT": PROJECT}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def credentials(gcs_endpoint: str):
    """Explicit credentials for the emulator: its endpoint, anonymous."""
    from plait_gcp import GcpCredentials

    return GcpCredentials(project=PROJECT, api_endpoint=gcs_endpoint, anonymous=True)


def _create_bucket(credentials: Any, prefix: str = "plait-test") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    credentials.get_storage_client().create_bucket(name)
    return name


@pytest.fixture
def new_bucket_name(credentials):
    """``new_bucket_name(prefix="plait-test")`` creates a uniquely named bucket on the emulator."""
    return lambda prefix="plait-test": _create_bucket(credentials, prefix)


@pytest.fixture
def bucket(credentials):
    """A GcsBucket on a fresh, empty bucket."""
    from plait_gcp import GcsBucket

    return GcsBucket(bucket_name=_create_bucket(credentials), credentials=credentials)


@pytest.fixture(scope="session")
def service_account_info() -> dict[str, str]:
    """A service account key file's content, with a freshly generated RSA key (never a real one)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {
        "type": "service_account",
        "project_id": "plait-keys",
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem,
        "client_email": "plait-runner@plait-keys.iam.gserviceaccount.com",
        "client_id": "104293847561234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


@pytest.fixture
def key_file(tmp_path: Path, service_account_info: dict[str, str]) -> Path:
    """The generated key written as a key file."""
    path = tmp_path / "plait-runner-key.json"
    path.write_text(json.dumps(service_account_info, indent=2))
    return path
