"""plait's collection conventions for plait-aws (plait.testing.CollectionSuite): discovery,
declarations, block conformance, the exported API, the import rules and README.md's flow (run
against moto's server); and what the suite does not cover: the s3 scheme and loading by slug.
"""

from __future__ import annotations

import pytest

import plait_aws
from plait.blocks import Block
from plait.testing import CollectionSuite
from plait_aws import AwsCredentials, AwsSecret, S3Bucket, s3_bucket_from_url
from plait_aws.tasks import TASKS

CREDENTIALS = AwsCredentials(
    aws_access_key_id="AKIAEXAMPLEKEY000001",
    aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    aws_session_token="FwoGZXIvYXdzEXAMPLETOKEN",
    region_name="eu-west-1",
    role_arn="arn:aws:iam::123456789012:role/plait",
    external_id="partner-42",
    endpoint_url="https://s3.example.com",
    client_parameters={"verify": False, "config": {"retries": {"max_attempts": 5, "mode": "standard"}}},
)
# README.md's flow reads report.csv and writes to the bucket "analytics": both made first.
README_SETUP = """\
import pathlib

import boto3

s3 = boto3.client("s3", region_name="us-east-1")
if "analytics" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
    s3.create_bucket(Bucket="analytics")
pathlib.Path("report.csv").write_text("id,total\\n1,9.5\\n")
"""


class TestPlaitAws(CollectionSuite):
    package = plait_aws
    examples = {
        AwsCredentials: [CREDENTIALS],
        S3Bucket: [S3Bucket(bucket_name="analytics", bucket_folder="plait/results", credentials=CREDENTIALS,
                            multipart_threshold=16 * 1024 * 1024)],
        AwsSecret: [AwsSecret(secret_name="prod/warehouse", credentials=CREDENTIALS)],
    }
    # docs/collections/plait-aws.md's blocks continue one another (not runnable one by one)
    docs = ["README.md"]
    tasks = TASKS
    requires_plait = ">=0.1,<0.2"

    def docs_env(self, request: pytest.FixtureRequest) -> dict[str, str]:
        return request.getfixturevalue("aws_env")  # boto3's chain pointed at moto

    def docs_script(self, code: str, request: pytest.FixtureRequest) -> str:
        return README_SETUP + "\n" + code if "s3://analytics" in code else code


def test_the_registered_tasks_are_these() -> None:
    # the suite checks that the plugin registers exactly TASKS
    assert {t.name for t in TASKS} == {
        "s3_upload", "s3_download", "s3_list_objects", "s3_copy", "s3_move", "s3_delete",
        "read_secret", "write_secret", "delete_secret",
    }


def test_blocks_have_their_capabilities() -> None:
    assert set(S3Bucket.capabilities) >= {"read-path", "write-path"}
    assert "credentials" in AwsCredentials.capabilities


def test_s3_scheme_is_registered(plait_harness):
    from plait.results import resolve_storage

    storage = resolve_storage("s3://discovered/prefix")
    assert isinstance(storage, S3Bucket) and storage.uri == "s3://discovered/prefix"
    assert s3_bucket_from_url("s3://discovered/prefix") == storage


def test_blocks_load_by_slug(plait_harness):
    S3Bucket(bucket_name="lake", credentials=AwsCredentials(region_name="eu-west-1")).save("lake")
    loaded = Block.load("s3-bucket/lake")
    assert isinstance(loaded, S3Bucket) and loaded.credentials.region_name == "eu-west-1"
