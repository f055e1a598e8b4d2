"""Fixtures: fakesnow's HTTP server (``python -m fakesnow -s``) on a free port of 127.0.0.1,
one per test session, spoken to by the real snowflake-connector-python; a database of its
own for each test; RSA keys for key-pair login.

fakesnow's server accepts any account, user and password (and any key-pair JWT or OAuth
token): it checks the protocol, not the identity. Tables live in memory, shared by every
session of the server, so each test gets a uniquely named database.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from plait_snowflake import SnowflakeConnector, SnowflakeCredentials

PASSWORD = "Sn0w-Pa55-hunter2"
PASSPHRASE = "key-passphrase-Qx7"
# What plait's tests tell the connector: no telemetry to Snowflake from a test run.
SESSION_PARAMETERS = {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False, "CLIENT_TELEMETRY_ENABLED": False}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def fakesnow_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The port of a fakesnow server on 127.0.0.1, started for the session and stopped after."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("fakesnow") / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "fakesnow", "-s", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"fakesnow server exited with {process.returncode}:\n{log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"fakesnow server did not answer on port {port} within 30 s:\n"
                                f"{log_path.read_text()[-2000:]}")
                time.sleep(0.05)
        yield port
    finally:
        process.send_signal(signal.SIGINT)  # fakesnow's server stops on SIGINT
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def make_credentials(fakesnow_port: int) -> Callable[..., SnowflakeCredentials]:
    """``make_credentials(**changes)``: credentials for the fakesnow server, password login
    unless the changes say otherwise (``password=None, private_key=...``)."""

    def make(**changes: object) -> SnowflakeCredentials:
        values: dict = dict(
            account="plait-test", user="tester", password=PASSWORD, role="TESTER",
            host="127.0.0.1", port=fakesnow_port, protocol="http", login_timeout=10,
            session_parameters=dict(SESSION_PARAMETERS),
            # fakesnow answers what it cannot do with HTTP 500, which the connector retries
            # until network_timeout: fail within seconds rather than hang.
            connect_args={"network_timeout": 5},
        )
        values.update(changes)
        return SnowflakeCredentials(**values)

    return make


@pytest.fixture
def credentials(make_credentials: Callable[..., SnowflakeCredentials]) -> SnowflakeCredentials:
    """Password credentials for the fakesnow server (password: the ``password`` fixture)."""
    return make_credentials()


@pytest.fixture
def password() -> str:
    """The password of the ``credentials`` fixture."""
    return PASSWORD


@pytest.fixture
def passphrase() -> str:
    """The passphrase of ``encrypted_pem`` and ``key_file``."""
    return PASSPHRASE


@pytest.fixture
def database(credentials: SnowflakeCredentials) -> Iterator[str]:
    """A fresh database (with schema PUBLIC) on the fakesnow server. (fakesnow cannot DROP
    DATABASE; the server's memory goes when the session ends.)"""
    name = f"PLAIT_{uuid.uuid4().hex[:10].upper()}"
    connection = credentials.get_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
            cursor.execute(f"CREATE SCHEMA {name}.PUBLIC")
    finally:
        connection.close()
    yield name


@pytest.fixture
def connector(credentials: SnowflakeCredentials, database: str) -> Iterator[SnowflakeConnector]:
    """A connector to this test's database (schema PUBLIC), closed after the test."""
    with SnowflakeConnector(credentials=credentials, warehouse="TEST_WH", database=database,
                            schema_name="PUBLIC") as connector:
        yield connector


@pytest.fixture
def people(connector: SnowflakeConnector) -> str:
    """A table PEOPLE (ID, NAME) with five rows, ids 1 to 5."""
    connector.execute("CREATE TABLE PEOPLE (ID INTEGER, NAME VARCHAR)")
    connector.execute_many(
        "INSERT INTO PEOPLE (ID, NAME) VALUES (?, ?)",
        [(1, "ada"), (2, "grace"), (3, "edsger"), (4, "barbara"), (5, "donald")],
    )
    return "PEOPLE"


# -- RSA keys for key-pair login ------------------------------------------------------------------
@pytest.fixture(scope="session")
def rsa_key() -> object:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def encrypted_pem(rsa_key: object) -> str:
    """The RSA key as PKCS#8 PEM, encrypted with PASSPHRASE."""
    from cryptography.hazmat.primitives import serialization

    return rsa_key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSPHRASE.encode()),
    ).decode()


@pytest.fixture(scope="session")
def plain_pem(rsa_key: object) -> str:
    """The RSA key as unencrypted PKCS#8 PEM."""
    from cryptography.hazmat.primitives import serialization

    return rsa_key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def key_file(tmp_path: Path, encrypted_pem: str) -> Path:
    path = tmp_path / "rsa_key.p8"
    path.write_text(encrypted_pem)
    return path
