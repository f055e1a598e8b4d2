"""S3Bucket against moto's HTTP server: storage interface, files, folders, listing, transfers."""

from __future__ import annotations

import hashlib
import io
import os
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import ValidationError

from plait_aws import AwsError, S3Bucket

MiB = 1024 * 1024


@contextmanager
def count_calls(client, operation: str):
    """Count the requests of one S3 operation made through ``client``."""
    calls: list[str] = []

    def handler(**_: object) -> None:
        calls.append(operation)

    event = f"before-call.s3.{operation}"
    client.meta.events.register(event, handler)
    try:
        yield calls
    finally:
        client.meta.events.unregister(event, handler)


def test_uri_and_keys(credentials):
    root = S3Bucket(bucket_name="data", credentials=credentials)
    nested = S3Bucket(bucket_name="data", bucket_folder="/plait//results/", credentials=credentials)
    assert root.uri == "s3://data"
    assert nested.uri == "s3://data/plait/results"
    assert nested.bucket_folder == "plait/results"
    assert nested.object_key("a/b.txt") == "plait/results/a/b.txt"
    assert root.object_key("/a/b.txt") == "a/b.txt"
    with pytest.raises(ValueError, match="does not name an object"):
        nested.object_key("")


def test_bad_bucket_settings_are_refused():
    with pytest.raises(ValidationError, match="without 's3://'"):
        S3Bucket(bucket_name="s3://data")
    with pytest.raises(ValidationError, match="put the folder in bucket_folder"):
        S3Bucket(bucket_name="data/folder")
    with pytest.raises(ValidationError, match="'..'"):
        S3Bucket(bucket_name="data", bucket_folder="a/../b")
    with pytest.raises(ValidationError):
        S3Bucket(bucket_name="data", multipart_threshold=1024)


def test_read_and_write_paths(bucket):
    folder = bucket.model_copy(update={"bucket_folder": "results"})
    assert folder.write_path("a/one.bin", b"\x00\x01payload") == "results/a/one.bin"
    assert folder.read_path("a/one.bin") == b"\x00\x01payload"
    folder.write_path("a/one.bin", b"replaced")
    assert folder.read_path("a/one.bin") == b"replaced"
    assert bucket.read_path("results/a/one.bin") == b"replaced"  # the folder is a key prefix
    assert folder.exists("a/one.bin") and not folder.exists("a/two.bin")
    with pytest.raises(FileNotFoundError, match=f"s3://{bucket.bucket_name}/results/missing.txt"):
        folder.read_path("missing.txt")
    folder.delete_path("a/one.bin")
    assert not folder.exists("a/one.bin")


def test_missing_bucket_is_a_clear_error(credentials):
    ghost = S3Bucket(bucket_name="no-such-bucket-plait", credentials=credentials)
    with pytest.raises(AwsError, match="no-such-bucket-plait.*NoSuchBucket") as caught:
        ghost.list_objects()
    assert caught.value.code == "NoSuchBucket"
    with pytest.raises(AwsError, match="uploading to s3://no-such-bucket-plait/x"):
        ghost.write_path("x", b"1")


def test_upload_and_download_files(bucket, tmp_path, monkeypatch):
    source = tmp_path / "report.csv"
    source.write_text("a,b\n1,2\n")
    assert bucket.upload_from_path(source) == "report.csv"
    assert bucket.upload_from_path(str(source), "reports/2026/report.csv") == "reports/2026/report.csv"
    target = bucket.download_to_path("reports/2026/report.csv", tmp_path / "out" / "copy.csv")
    assert target == (tmp_path / "out" / "copy.csv").resolve()
    assert target.read_text() == "a,b\n1,2\n"
    monkeypatch.chdir(tmp_path / "out")
    assert bucket.download_to_path("report.csv").read_text() == "a,b\n1,2\n"
    with pytest.raises(FileNotFoundError, match="no object"):
        bucket.download_to_path("absent.csv", tmp_path / "absent.csv")
    with pytest.raises(FileNotFoundError, match="no file"):
        bucket.upload_from_path(tmp_path / "absent.csv")


def test_upload_and_download_file_objects(bucket):
    assert bucket.upload_from_file_object(io.BytesIO(b"streamed bytes"), "streams/one") == "streams/one"
    sink = io.BytesIO()
    assert bucket.download_to_file_object("streams/one", sink) is sink
    assert sink.getvalue() == b"streamed bytes"
    with pytest.raises(FileNotFoundError):
        bucket.download_to_file_object("streams/none", io.BytesIO())


def test_upload_and_download_folders(bucket, tmp_path):
    source = tmp_path / "site"
    (source / "css").mkdir(parents=True)
    (source / "index.html").write_text("<h1>hi</h1>")
    (source / "css" / "main.css").write_text("h1 {}")
    keys = bucket.upload_from_folder(source, "www")
    assert keys == ["www/css/main.css", "www/index.html"]
    folder = bucket.model_copy(update={"bucket_folder": "www"})
    assert folder.list_paths() == ["css/main.css", "index.html"]

    restored = bucket.download_folder_to_path("www", tmp_path / "restored")
    assert (restored / "index.html").read_text() == "<h1>hi</h1>"
    assert (restored / "css" / "main.css").read_text() == "h1 {}"
    # From a bucket folder, the folder's own content; a sub-folder by its relative name.
    assert (folder.download_folder_to_path(to_folder=tmp_path / "all") / "css" / "main.css").exists()
    only_css = folder.download_folder_to_path("css", tmp_path / "css-only")
    assert sorted(p.name for p in only_css.rglob("*")) == ["main.css"]
    with pytest.raises(NotADirectoryError):
        bucket.upload_from_folder(tmp_path / "nothing-here")


def test_list_objects_with_prefix_and_pagination(bucket):
    for i in range(25):
        bucket.write_path(f"logs/{i:02d}.log", str(i).encode())
    bucket.write_path("other/x.log", b"x")
    client = bucket.credentials.get_client("s3")
    with count_calls(client, "ListObjectsV2") as calls:
        listed = bucket.list_objects("logs/", page_size=10)
    assert [o["Key"] for o in listed] == [f"logs/{i:02d}.log" for i in range(25)]
    assert len(calls) == 3  # 10 + 10 + 5
    assert listed[3]["Size"] == 1 and "LastModified" in listed[3]
    with count_calls(client, "ListObjectsV2") as calls:
        assert len(bucket.list_objects("logs/", page_size=4, max_items=9)) == 9
    assert len(calls) == 3  # stopped after the page holding the 9th
    assert len(bucket.list_objects()) == 26
    assert bucket.list_objects("logs/1") == bucket.list_objects("logs/1", page_size=1)
    assert len(bucket.list_objects("logs/1")) == 10
    with pytest.raises(ValueError, match="page_size"):
        bucket.list_objects(page_size=5000)


def test_copy_move_and_delete(bucket, credentials, new_bucket_name):
    bucket.write_path("src/a.txt", b"A")
    bucket.write_path("src/b.txt", b"B")
    assert bucket.copy_object("src/a.txt", "dst/a.txt") == "dst/a.txt"
    assert bucket.read_path("dst/a.txt") == b"A" and bucket.exists("src/a.txt")

    other = S3Bucket(bucket_name=new_bucket_name(), bucket_folder="inbox", credentials=credentials)
    assert bucket.copy_object("src/a.txt", "a.txt", to_bucket=other) == "inbox/a.txt"
    assert other.read_path("a.txt") == b"A"
    assert bucket.copy_object("src/a.txt", "raw/a.txt", to_bucket=other.bucket_name) == "raw/a.txt"
    assert S3Bucket(bucket_name=other.bucket_name, credentials=credentials).read_path("raw/a.txt") == b"A"

    assert bucket.move_object("src/b.txt", "moved/b.txt") == "moved/b.txt"
    assert bucket.read_path("moved/b.txt") == b"B" and not bucket.exists("src/b.txt")
    assert bucket.move_object("moved/b.txt", "b.txt", to_bucket=other) == "inbox/b.txt"
    assert other.read_path("b.txt") == b"B" and not bucket.exists("moved/b.txt")
    with pytest.raises(FileNotFoundError, match="src/none.txt"):
        bucket.copy_object("src/none.txt", "x.txt")

    assert bucket.delete_object("dst/a.txt") == "dst/a.txt"
    assert not bucket.exists("dst/a.txt")
    bucket.delete_object("dst/a.txt")  # already gone: no error, as in S3
    for i in range(5):
        bucket.write_path(f"bulk/{i}", b"x")
    deleted = bucket.delete_objects([f"bulk/{i}" for i in range(5)])
    assert sorted(deleted) == [f"bulk/{i}" for i in range(5)]
    assert bucket.list_paths("bulk/") == []


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_large_file_goes_through_multipart_upload(bucket, tmp_path):
    big = bucket.model_copy(update={"multipart_threshold": 5 * MiB, "multipart_chunksize": 5 * MiB})
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(6 * MiB + 123))
    client = big.credentials.get_client("s3")
    with count_calls(client, "CreateMultipartUpload") as created, count_calls(client, "UploadPart") as parts, \
            count_calls(client, "PutObject") as puts:
        key = big.upload_from_path(source, "big/big.bin")
    assert (len(created), len(parts), len(puts)) == (1, 2, 0)

    head = client.head_object(Bucket=big.bucket_name, Key=key)
    assert head["ContentLength"] == source.stat().st_size
    assert head["ETag"].strip('"').endswith("-2")  # S3 marks multipart objects with -<parts>
    assert client.list_multipart_uploads(Bucket=big.bucket_name).get("Uploads", []) == []  # completed

    copy = big.download_to_path("big/big.bin", tmp_path / "back.bin")
    assert _sha256(copy) == _sha256(source)
    # Copies of large objects are multipart too.
    with count_calls(client, "UploadPartCopy") as part_copies:
        big.copy_object("big/big.bin", "big/copy.bin")
    assert len(part_copies) == 2
    assert client.head_object(Bucket=big.bucket_name, Key="big/copy.bin")["ContentLength"] == source.stat().st_size


def test_small_file_is_one_put(bucket, tmp_path):
    source = tmp_path / "small.bin"
    source.write_bytes(b"s" * 1024)
    client = bucket.credentials.get_client("s3")
    with count_calls(client, "PutObject") as puts, count_calls(client, "CreateMultipartUpload") as created:
        bucket.upload_from_path(source)
    assert (len(puts), len(created)) == (1, 0)
