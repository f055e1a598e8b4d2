"""Every block of plait-aws passes plait's block conformance suite."""

from __future__ import annotations

import pytest

from plait.testing import assert_block_conforms
from plait_aws import AwsCredentials, AwsSecret, S3Bucket
from plait_aws.plugin import BLOCK_CLASSES


def _credentials() -> AwsCredentials:
    return AwsCredentials(
        aws_access_key_id="AKIAEXAMPLEKEY000001",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        aws_session_token="FwoGZXIvYXdzEXAMPLETOKEN",
        region_name="eu-west-1",
        role_arn="arn:aws:iam::123456789012:role/plait",
        external_id="partner-42",
        endpoint_url="https://s3.example.com",
        client_parameters={"verify": False, "config": {"retries": {"max_attempts": 5, "mode": "standard"}}},
    )


EXAMPLES = {
    AwsCredentials: _credentials(),
    S3Bucket: S3Bucket(bucket_name="analytics", bucket_folder="plait/results", credentials=_credentials(),
                       multipart_threshold=16 * 1024 * 1024),
    AwsSecret: AwsSecret(secret_name="prod/warehouse", credentials=_credentials()),
}


def test_every_registered_block_has_an_example():
    assert set(EXAMPLES) == set(BLOCK_CLASSES)


@pytest.mark.parametrize("cls", list(EXAMPLES), ids=lambda c: c.block_type_slug)
def test_block_conforms(cls):
    assert_block_conforms(cls, EXAMPLES[cls])
