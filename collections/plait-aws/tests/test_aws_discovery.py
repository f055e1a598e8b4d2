"""plait finds plait-aws through its entry point: blocks, tasks and the s3 scheme."""

from __future__ import annotations

from plait import plugins
from plait.blocks import Block, get_block_class
from plait_aws import AwsCredentials, AwsSecret, S3Bucket, s3_bucket_from_url
from plait_aws.tasks import TASKS


def test_the_plugin_is_discovered_and_healthy():
    info = {p.name: p for p in plugins.plugins()}
    assert "plait_aws" in info
    assert not [d for d in plugins.diagnoses() if d.plugin == "plait_aws"]


def test_blocks_are_registered():
    registered = plugins.block_classes()
    assert registered["aws-credentials"] is AwsCredentials
    assert registered["s3-bucket"] is S3Bucket
    assert registered["aws-secret"] is AwsSecret
    assert get_block_class("s3-bucket") is S3Bucket
    assert set(S3Bucket.capabilities) >= {"read-path", "write-path"}
    assert "credentials" in AwsCredentials.capabilities


def test_tasks_are_registered():
    ours = [t for owner, t in plugins.registered_tasks() if owner == "plait_aws"]
    assert ours == list(TASKS)
    assert {t.name for t in ours} == {
        "s3_upload", "s3_download", "s3_list_objects", "s3_copy", "s3_move", "s3_delete",
        "read_secret", "write_secret", "delete_secret",
    }


def test_s3_scheme_is_registered(plait_harness):
    from plait.results import resolve_storage

    storage = resolve_storage("s3://discovered/prefix")
    assert isinstance(storage, S3Bucket) and storage.uri == "s3://discovered/prefix"
    assert s3_bucket_from_url("s3://discovered/prefix") == storage


def test_blocks_load_by_slug(plait_harness):
    S3Bucket(bucket_name="lake", credentials=AwsCredentials(region_name="eu-west-1")).save("lake")
    loaded = Block.load("s3-bucket/lake")
    assert isinstance(loaded, S3Bucket) and loaded.credentials.region_name == "eu-west-1"
