"""AwsSecret against moto's Secrets Manager (over HTTP)."""

from __future__ import annotations

import uuid

import pytest
from pydantic import SecretStr

from plait_aws import AwsError, AwsSecret


@pytest.fixture
def secret(credentials) -> AwsSecret:
    return AwsSecret(secret_name=f"plait/test/{uuid.uuid4().hex[:8]}", credentials=credentials)


def test_write_creates_then_updates_and_read_gets_the_current_value(secret):
    arn = secret.write_secret("first-value")
    assert arn.startswith("arn:aws:secretsmanager:us-east-1:") and secret.secret_name in arn
    assert secret.read_secret() == "first-value"
    assert secret.write_secret(SecretStr("second-value")) == arn  # same secret, new version
    assert secret.read_secret() == "second-value"
    assert secret.read_secret(version_stage="AWSPREVIOUS") == "first-value"


def test_binary_secrets(secret):
    secret.write_secret(b"\x00\xffkey-bytes")
    value = secret.read_secret()
    assert isinstance(value, bytes) and value == b"\x00\xffkey-bytes"


def test_reading_a_missing_secret(secret):
    with pytest.raises(FileNotFoundError, match=f"no secret '{secret.secret_name}'"):
        secret.read_secret()


def test_delete_with_recovery_window_then_force(secret, credentials):
    secret.write_secret("to-delete")
    assert secret.delete_secret(recovery_window_in_days=7)[:4].isdigit()
    with pytest.raises(AwsError, match="reading secret .* failed: GetSecretValue returned InvalidRequestException"):
        secret.read_secret()  # scheduled for deletion: readable no more

    gone = AwsSecret(secret_name=f"plait/test/{uuid.uuid4().hex[:8]}", credentials=credentials)
    gone.write_secret("bye")
    gone.delete_secret(force_delete_without_recovery=True)
    with pytest.raises(FileNotFoundError):
        gone.read_secret()
    gone.delete_secret(force_delete_without_recovery=True)  # like AWS: forcing is idempotent


def test_delete_options_are_checked(secret):
    with pytest.raises(ValueError, match="not both"):
        secret.delete_secret(recovery_window_in_days=7, force_delete_without_recovery=True)
    with pytest.raises(ValueError, match="between 7 and 30"):
        secret.delete_secret(recovery_window_in_days=3)
    with pytest.raises(TypeError, match="str or bytes"):
        secret.write_secret(42)  # type: ignore[arg-type]


def test_region_is_needed(moto_endpoint):
    from plait_aws import AwsCredentials

    lost = AwsSecret(secret_name="x", credentials=AwsCredentials(
        aws_access_key_id="AKIAPLAITTESTKEY0001", aws_secret_access_key="whatever-secret", endpoint_url=moto_endpoint))
    with pytest.raises(AwsError, match="no AWS region configured; set region_name"):
        lost.read_secret()
