"""The prebuilt tasks inside flows, against moto's HTTP server."""

from __future__ import annotations

import uuid
from pathlib import Path

from pydantic import SecretStr

from plait import flow
from plait_aws import (
    AwsSecret,
    S3Bucket,
    delete_secret,
    read_secret,
    s3_copy,
    s3_delete,
    s3_download,
    s3_list_objects,
    s3_move,
    s3_upload,
    write_secret,
)


def test_s3_tasks_in_a_flow(plait_harness, bucket, credentials, new_bucket_name, tmp_path):
    archive = S3Bucket(bucket_name=new_bucket_name("plait-archive"), bucket_folder="archive", credentials=credentials)
    source = tmp_path / "orders.csv"
    source.write_text("id\n1\n2\n")

    @flow
    def shuffle_files(local: str) -> dict:
        key = s3_upload(bucket, local, "incoming/orders.csv")
        copied = s3_copy(bucket, "incoming/orders.csv", "backup/orders.csv")
        listed = s3_list_objects(bucket, "incoming/", page_size=1)
        moved = s3_move(bucket, "backup/orders.csv", "orders.csv", to_bucket=archive)
        downloaded = s3_download(archive, "orders.csv", str(tmp_path / "back" / "orders.csv"))
        deleted = s3_delete(bucket, ["incoming/orders.csv"])
        return {"key": key, "copied": copied, "listed": listed, "moved": moved,
                "downloaded": downloaded, "deleted": deleted}

    out = shuffle_files(str(source))
    assert out["key"] == "incoming/orders.csv" and out["copied"] == "backup/orders.csv"
    assert [(o["key"], o["path"], o["size"]) for o in out["listed"]] == [("incoming/orders.csv", "incoming/orders.csv", 7)]
    assert out["listed"][0]["last_modified"][:2] == "20" and out["listed"][0]["etag"]
    assert out["moved"] == "archive/orders.csv"
    assert Path(out["downloaded"]).read_text() == "id\n1\n2\n"
    assert out["deleted"] == ["incoming/orders.csv"]
    assert bucket.list_paths() == []
    assert archive.list_paths() == ["orders.csv"]

    run = plait_harness.flow_runs()[0]
    assert run["state_type"] == "COMPLETED"
    tasks = plait_harness.flow_run(run["id"])["task_runs"]
    assert sorted(t["task_name"] for t in tasks) == sorted(
        ["s3_upload", "s3_copy", "s3_list_objects", "s3_move", "s3_download", "s3_delete"])
    assert {t["state_type"] for t in tasks} == {"COMPLETED"}


def test_secret_tasks_in_a_flow(plait_harness, credentials):
    secret = AwsSecret(secret_name=f"plait/tasks/{uuid.uuid4().hex[:8]}", credentials=credentials)
    value = f"s3cr3t-{uuid.uuid4().hex}"

    @flow
    def rotate() -> tuple:
        arn = write_secret(secret, SecretStr(value))
        read = read_secret(secret)
        when = delete_secret(secret, force_delete_without_recovery=True)
        return arn, read, when

    arn, read, when = rotate()
    assert arn.startswith("arn:aws:secretsmanager:") and read == value and when
    run = plait_harness.flow_runs()[0]
    assert run["state_type"] == "COMPLETED"
    plait_harness.flush()
    # Neither the run history nor result storage holds the secret value.
    for path in plait_harness.home.rglob("*"):
        if path.is_file():
            assert value.encode() not in path.read_bytes(), path


def test_tasks_keep_their_options(bucket):
    retrying = s3_upload.with_options(retries=2)
    assert retrying.options.retries == 2
    assert s3_upload.__doc__ and s3_upload.__doc__.startswith("Upload a local file")
    assert read_secret.options.persist_result is False
