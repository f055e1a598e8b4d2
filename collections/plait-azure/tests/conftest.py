"""Fixtures: Azurite's blob service (npm ``azurite``) on 127.0.0.1, one per test session, with
Azurite's published development account, and Azure settings isolated from the machine's own.

Azurite is found as ``azurite-blob`` on PATH. When it is missing the tests that need it skip,
unless ``PLAIT_REQUIRE_AZURITE=1`` (CI), which makes them fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

# Azurite's well-known development account (published in Azurite's README; not a real secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
INSTALL_HINT = "install it with `npm install -g azurite` (it provides azurite-blob)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


_FAILED: list[str] = []  # why Azurite could not be had, so later tests do not try again


def _unavailable(reason: str) -> None:
    _FAILED[:] = [reason]
    if os.environ.get("PLAIT_REQUIRE_AZURITE") == "1":
        pytest.fail(f"{reason} (PLAIT_REQUIRE_AZURITE=1 makes this a failure)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def azurite_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The blob endpoint of the development account on an Azurite started for this session."""
    if _FAILED:
        _unavailable(_FAILED[0])
    executable = shutil.which("azurite-blob")
    if executable is None:
        _unavailable(f"azurite-blob is not on PATH; {INSTALL_HINT}")
    workspace = tmp_path_factory.mktemp("azurite")
    log = workspace / "azurite.log"
    for _attempt in range(3):  # another process may take the free port before Azurite does
        port = _free_port()
        with log.open("ab") as out:
            process = subprocess.Popen(
                [str(executable), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
                 "--skipApiVersionCheck", "--loose", "--silent",
                 "--disableTelemetry"],
                cwd=workspace, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline and not _answers(port):
            time.sleep(0.1)
        if process.poll() is None and _answers(port):
            break
        process.kill()
        process.wait()
    else:
        _unavailable(f"Azurite did not start; its output:\n{log.read_text(errors='replace')}")
    try:
        yield f"http://127.0.0.1:{port}/{ACCOUNT}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(autouse=True)
def isolated_azure(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AZURE_* variable of this machine leaks into a test."""
    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def connection_string(azurite_url: str) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={azurite_url};")


@pytest.fixture
def credentials(azurite_url: str):
    """Account-key credentials for Azurite's development account."""
    from plait_azure import AzureBlobCredentials

    return AzureBlobCredentials(account_name=ACCOUNT, account_key=ACCOUNT_KEY, account_url=azurite_url)


def _make_sas(**permissions: bool) -> str:
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    wanted = permissions or dict(read=True, write=True, list=True, delete=True, create=True, add=True)
    return generate_account_sas(ACCOUNT, ACCOUNT_KEY, ResourceTypes(service=True, container=True, object=True),
                                AccountSasPermissions(**wanted), expiry=datetime.now(UTC) + timedelta(hours=1))


@pytest.fixture
def dev_account() -> tuple[str, str]:
    """(name, key) of Azurite's development account."""
    return ACCOUNT, ACCOUNT_KEY


@pytest.fixture
def make_sas():
    """``make_sas(read=True, ...)``: an account SAS for the development account, made by
    azure-storage-blob (all permissions when none are named)."""
    return _make_sas


@pytest.fixture
def sas_credentials(azurite_url: str):
    from plait_azure import AzureBlobCredentials

    return AzureBlobCredentials(account_url=azurite_url, sas_token=_make_sas())


@pytest.fixture
def azure_env(monkeypatch: pytest.MonkeyPatch, connection_string: str) -> dict[str, str]:
    """The AZURE_STORAGE_CONNECTION_STRING variable pointed at Azurite; returns it."""
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string)
    return {"AZURE_STORAGE_CONNECTION_STRING": connection_string}


def _create(credentials, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    credentials.get_service_client().create_container(name)
    return name


@pytest.fixture
def new_container_name(credentials):
    """``new_container_name(prefix="plait-test")`` creates a uniquely named container."""
    return lambda prefix="plait-test": _create(credentials, prefix)


@pytest.fixture
def container(credentials):
    """A container block on a fresh, empty container."""
    from plait_azure import AzureBlobStorageContainer

    return AzureBlobStorageContainer(container_name=_create(credentials, "plait-test"), credentials=credentials)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path
