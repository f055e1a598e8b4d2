"""AwsCredentials against moto's HTTP server: the credential chain, clients, connection tests."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from plait_aws import AwsCredentials, AwsError

DUMMY_KEY_ID = "AKIAPLAITTESTKEY0001"
DUMMY_SECRET = "plait-test-secret-access-key-5f2b"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_empty_block_falls_back_to_the_environment(aws_env):
    credentials = AwsCredentials()
    found = credentials.get_session().get_credentials()
    assert found.access_key == aws_env["AWS_ACCESS_KEY_ID"]
    assert found.secret_key == aws_env["AWS_SECRET_ACCESS_KEY"]
    assert credentials.get_session().region_name == "us-east-1"
    # AWS_ENDPOINT_URL reaches moto without endpoint_url on the block.
    s3 = credentials.get_client("s3")
    s3.create_bucket(Bucket="chain-fallback-bucket")
    assert "chain-fallback-bucket" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    credentials.test_connection()


def test_block_fields_win_over_the_environment(aws_env, moto_endpoint):
    credentials = AwsCredentials(
        aws_access_key_id="AKIAFROMTHEBLOCK0001", aws_secret_access_key="from-the-block-secret", region_name="eu-west-1"
    )
    found = credentials.get_session().get_credentials()
    assert (found.access_key, found.secret_key) == ("AKIAFROMTHEBLOCK0001", "from-the-block-secret")
    assert credentials.get_client("s3").meta.region_name == "eu-west-1"


def test_changed_environment_gives_new_clients(aws_env, monkeypatch):
    credentials = AwsCredentials()
    first = credentials.get_client("s3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAROTATEDKEY000002")
    second = credentials.get_client("s3")
    assert second is not first
    assert credentials.get_session().get_credentials().access_key == "AKIAROTATEDKEY000002"


def test_clients_are_cached_per_service_and_configuration(credentials):
    s3 = credentials.get_client("s3")
    assert credentials.get_client("s3") is s3
    assert AwsCredentials(**credentials.model_dump()).get_client("s3") is s3  # an equal block shares it
    assert credentials.get_client("sts") is not s3
    other_region = credentials.model_copy(update={"region_name": "eu-central-1"})
    assert other_region.get_client("s3") is not s3
    assert s3.meta.endpoint_url == credentials.endpoint_url


def test_client_parameters_reach_the_client(credentials):
    config = {"retries": {"max_attempts": 7, "mode": "standard"}, "s3": {"addressing_style": "path"},
              "signature_version": "s3v4"}
    tuned = AwsCredentials(**{**credentials.model_dump(), "client_parameters": {"config": config}})
    client = tuned.get_client("s3")
    assert client.meta.config.retries == {"total_max_attempts": 8, "mode": "standard"}  # botocore counts the first try
    assert client.meta.config.s3["addressing_style"] == "path"
    assert client.meta.config.signature_version == "s3v4"
    assert "plait-aws/" in client.meta.config.user_agent_extra
    client.list_buckets()


def test_invalid_settings_are_refused_clearly():
    with pytest.raises(ValidationError, match="set aws_secret_access_key too"):
        AwsCredentials(aws_access_key_id=DUMMY_KEY_ID)
    with pytest.raises(ValidationError, match="unknown botocore Config option"):
        AwsCredentials(client_parameters={"config": {"retry": 3}})
    with pytest.raises(ValidationError, match="endpoint_url must start with http"):
        AwsCredentials(endpoint_url="127.0.0.1:9000")
    assert AwsCredentials(client_parameters={"verify": "false"}).client_parameters.verify is False
    assert AwsCredentials(profile_name="  ").profile_name is None


def test_connection_ok(credentials):
    assert credentials.test_connection() is None


def test_connection_needs_no_region(credentials):
    # STS is global: without a region the test asks us-east-1 rather than failing.
    assert credentials.model_copy(update={"region_name": None}).test_connection() is None


def test_connection_to_a_closed_port_fails_clearly(credentials):
    url = f"http://127.0.0.1:{_closed_port()}"
    for region in ("us-east-1", None):
        broken = credentials.model_copy(update={"endpoint_url": url, "region_name": region})
        with pytest.raises(AwsError) as caught:
            broken.test_connection()
        message = str(caught.value)
        assert message.startswith(f"AWS connection test failed at {url}: could not connect to {url}"), message
        assert DUMMY_SECRET not in message and DUMMY_SECRET not in repr(caught.value)


def test_connection_without_credentials_says_how_to_give_them(moto_endpoint):
    with pytest.raises(AwsError, match="no AWS credentials found.*aws_access_key_id"):
        AwsCredentials(endpoint_url=moto_endpoint, region_name="us-east-1").test_connection()


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(AwsError, match="AWS profile 'nope' is not in the shared config"):
        AwsCredentials(profile_name="nope").get_session()


def test_profile_from_the_shared_files(monkeypatch, tmp_path, moto_endpoint):
    credentials_file = tmp_path / "credentials"
    credentials_file.write_text(
        f"[analytics]\naws_access_key_id = AKIAPROFILEKEY000003\naws_secret_access_key = {DUMMY_SECRET}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials_file))
    credentials = AwsCredentials(profile_name="analytics", region_name="us-east-1", endpoint_url=moto_endpoint)
    assert credentials.get_session().get_credentials().access_key == "AKIAPROFILEKEY000003"
    credentials.test_connection()


def test_assume_role_through_sts(credentials):
    role = credentials.model_copy(update={
        "role_arn": "arn:aws:iam::123456789012:role/plait-runner",
        "role_session_name": "plait-tests",
        "external_id": "ext-1234",
    })
    session_credentials = role.get_session().get_credentials()
    assert session_credentials.access_key != credentials.aws_access_key_id
    assert session_credentials.token  # temporary credentials carry a session token
    identity = role.get_client("sts").get_caller_identity()
    assert "plait-runner" in identity["Arn"] and "plait-tests" in identity["Arn"]
    role.test_connection()


def test_assume_role_failure_is_clear(credentials):
    url = f"http://127.0.0.1:{_closed_port()}"
    role = credentials.model_copy(update={"role_arn": "arn:aws:iam::123456789012:role/x", "endpoint_url": url})
    with pytest.raises(AwsError, match=r"assuming role arn:aws:iam::123456789012:role/x failed: could not connect"):
        role.get_session()


def test_unknown_service_is_a_clear_error(credentials):
    with pytest.raises(AwsError, match="creating a not-a-service client failed"):
        credentials.get_client("not-a-service")


def test_verify_is_left_to_boto3_unless_set(credentials):
    # Not passing verify lets boto3 apply AWS_CA_BUNDLE / the profile's ca_bundle.
    assert "verify" not in credentials.client_kwargs()
    insecure = AwsCredentials(**{**credentials.model_dump(), "client_parameters": {"verify": False}})
    assert insecure.client_kwargs()["verify"] is False
    bundled = AwsCredentials(client_parameters={"verify": "/etc/ssl/corp-ca.pem"})
    assert bundled.client_kwargs()["verify"] == "/etc/ssl/corp-ca.pem"
