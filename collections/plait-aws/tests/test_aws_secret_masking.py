"""Secrets never show: repr, JSON, the saved document, error messages."""

from __future__ import annotations

import json
import socket

import pytest

from plait.blocks import block_to_dict, load_document
from plait_aws import AwsCredentials, AwsError, AwsSecret, S3Bucket

SECRET = "plait-mask-me-9f8e7d6c5b4a"
TOKEN = "plait-token-mask-me-0a1b2c3d"


def _credentials(endpoint: str | None = None) -> AwsCredentials:
    return AwsCredentials(aws_access_key_id="AKIAMASKTEST00000001", aws_secret_access_key=SECRET,
                          aws_session_token=TOKEN, region_name="us-east-1", endpoint_url=endpoint)


@pytest.mark.parametrize("make", [
    lambda: _credentials(),
    lambda: S3Bucket(bucket_name="b", credentials=_credentials()),
    lambda: AwsSecret(secret_name="s", credentials=_credentials()),
], ids=["credentials", "s3-bucket", "aws-secret"])
def test_secrets_are_masked_in_repr_and_json(make):
    block = make()
    for text in (repr(block), str(block), block.model_dump_json(), json.dumps(block_to_dict(block)),
                 json.dumps(block.model_dump(mode="json"))):
        assert SECRET not in text and TOKEN not in text
    assert "aws_secret_access_key" in type(block).secret_fields() or \
        "credentials.aws_secret_access_key" in type(block).secret_fields()


def test_saved_blocks_are_encrypted_and_load_back(plait_harness):
    bucket = S3Bucket(bucket_name="b", bucket_folder="f", credentials=_credentials())
    bucket.save("masked")
    raw = b"".join(p.read_bytes() for p in plait_harness.home.rglob("*.db*") if p.is_file())
    assert raw and SECRET.encode() not in raw and TOKEN.encode() not in raw
    loaded = load_document("s3-bucket/masked")
    assert loaded == bucket
    assert loaded.credentials.aws_secret_access_key.get_secret_value() == SECRET


def test_connection_errors_do_not_carry_secrets():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(AwsError) as caught:
        _credentials(f"http://127.0.0.1:{port}").test_connection()
    for text in (str(caught.value), repr(caught.value)):
        assert SECRET not in text and TOKEN not in text


def test_error_explanations_mask_every_form_of_the_secrets_of_any_block():
    """A block built in code (never saved, so nothing registered its secrets) passed to
    ``explain``: its secrets are masked as they are, repr- and JSON-escaped and URL-encoded."""
    from urllib.parse import quote

    from botocore.exceptions import ClientError

    from plait_aws.credentials import explain

    secret = "a\\b'" + SECRET  # a backslash and a quote: repr doubles the one, escapes or swaps the other
    credentials = AwsCredentials(aws_access_key_id="AKIAMASKTEST00000001", aws_secret_access_key=secret,
                                 aws_session_token=TOKEN, region_name="us-east-1")
    message = f"signed with {secret!r}, {json.dumps(TOKEN)} and {quote(secret, safe='')}"
    exc = ClientError({"Error": {"Code": "SignatureDoesNotMatch", "Message": message}}, "GetCallerIdentity")
    for block in (credentials, S3Bucket(bucket_name="b", credentials=credentials)):
        text = explain(exc, block)
        assert text == 'GetCallerIdentity returned SignatureDoesNotMatch: signed with "***", "***" and ***', text


@pytest.mark.parametrize("given", [
    {"aws_secret_access_key": SECRET},  # refused as a whole: no key id goes with it
    {"aws_access_key_id": "AKIAMASKTEST00000001", "aws_secret_access_key": SECRET, "region_name": 5},
], ids=["secret-without-key-id", "another-field-bad"])
def test_validation_errors_do_not_echo_the_input(given):
    with pytest.raises(ValueError) as caught:
        AwsCredentials(**given)
    for text in (str(caught.value), repr(caught.value)):
        assert SECRET[:8] not in text and SECRET[-8:] not in text
