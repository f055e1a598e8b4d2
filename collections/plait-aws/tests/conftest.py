"""Fixtures: moto's real HTTP server on 127.0.0.1 (one per test session) and AWS settings
isolated from the machine's own (~/.aws, AWS_* variables, instance metadata)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

DUMMY_KEY_ID = "AKIAPLAITTESTKEY0001"
DUMMY_SECRET = "plait-test-secret-access-key-5f2b"
REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The URL of a moto server (S3, STS, Secrets Manager…) on a free port of 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def isolated_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS_* variable, config file or instance role of this machine leaks into a test."""
    import os

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> dict[str, str]:
    """boto3's standard chain pointed at moto through AWS_* variables; returns them."""
    values = {
        "AWS_ACCESS_KEY_ID": DUMMY_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": moto_endpoint,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def credentials(moto_endpoint: str):
    """Explicit credentials for the moto server (dummy keys)."""
    from plait_aws import AwsCredentials

    return AwsCredentials(
        aws_access_key_id=DUMMY_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET,
        region_name=REGION,
        endpoint_url=moto_endpoint,
    )


def _create_bucket(credentials, prefix: str = "plait-test") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    credentials.get_client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def new_bucket_name(credentials):
    """``new_bucket_name(prefix="plait-test")`` creates a uniquely named bucket on moto."""
    return lambda prefix="plait-test": _create_bucket(credentials, prefix)


@pytest.fixture
def bucket(credentials):
    """An S3Bucket on a fresh, empty bucket."""
    from plait_aws import S3Bucket

    return S3Bucket(bucket_name=_create_bucket(credentials), credentials=credentials)
