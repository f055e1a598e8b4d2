"""GcsBucket against the emulator: the storage interface, files, folders, listing, copies,
moves, deletions, folders inside the bucket, and the errors."""

from __future__ import annotations

import io
import os

import pytest
from pydantic import ValidationError

from plait_gcp import GcpError, GcsBucket


def test_storage_round_trip(bucket):
    assert not bucket.exists("results/a.bin")
    assert bucket.write_path("results/a.bin", b"\x00payload\xff") == "results/a.bin"
    assert bucket.exists("results/a.bin")
    assert bucket.read_path("results/a.bin") == b"\x00payload\xff"
    bucket.write_path("results/a.bin", b"replaced")
    assert bucket.read_path("results/a.bin") == b"replaced"
    bucket.write_path("results/b.bin", b"b")
    assert bucket.list_paths("results/") == ["results/a.bin", "results/b.bin"]
    bucket.delete_path("results/a.bin")
    bucket.delete_path("results/a.bin")  # already gone: no error
    assert bucket.list_paths() == ["results/b.bin"]
    with pytest.raises(FileNotFoundError, match=rf"no object gs://{bucket.bucket_name}/results/a.bin"):
        bucket.read_path("results/a.bin")


def test_a_folder_prefixes_every_path(credentials, bucket):
    inner = GcsBucket(bucket_name=bucket.bucket_name, bucket_folder="/plait//results/", credentials=credentials)
    assert inner.bucket_folder == "plait/results"
    assert inner.uri == f"gs://{bucket.bucket_name}/plait/results"
    assert inner.write_path("x/1.json", b"1") == "plait/results/x/1.json"
    bucket.write_path("elsewhere.json", b"0")
    assert inner.list_paths() == ["x/1.json"]
    assert bucket.list_paths() == ["elsewhere.json", "plait/results/x/1.json"]
    assert [o["name"] for o in inner.list_objects()] == ["plait/results/x/1.json"]
    assert inner.list_objects()[0]["path"] == "x/1.json"


def test_files_and_file_objects(bucket, tmp_path, monkeypatch):
    source = tmp_path / "report.csv"
    source.write_text("id,total\n1,9.5\n")
    assert bucket.upload_from_path(source) == "report.csv"
    assert bucket.upload_from_path(source, "reports/2026-12-04.csv") == "reports/2026-12-04.csv"
    target = bucket.download_to_path("reports/2026-12-04.csv", tmp_path / "out" / "deep" / "r.csv")
    assert target.read_text() == "id,total\n1,9.5\n"

    monkeypatch.chdir(tmp_path)
    assert bucket.download_to_path("report.csv") == (tmp_path / "report.csv").resolve()

    data = os.urandom(3 * 1024 * 1024 + 17)
    stream = io.BytesIO(b"skip" + data)
    stream.seek(4)  # uploads read from the current position
    bucket.upload_from_file_object(stream, "blobs/big.bin")
    into = bucket.download_to_file_object("blobs/big.bin", io.BytesIO())
    assert into.getvalue() == data

    with pytest.raises(FileNotFoundError, match="no file"):
        bucket.upload_from_path(tmp_path / "missing.csv")
    with pytest.raises(FileNotFoundError, match=f"no object gs://{bucket.bucket_name}/nope.csv"):
        bucket.download_to_path("nope.csv", tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="does not name an object"):
        bucket.write_path("folder/", b"")


def test_resumable_uploads_in_chunks(credentials, bucket):
    chunked = GcsBucket(bucket_name=bucket.bucket_name, credentials=credentials, chunk_size=256 * 1024)
    data = os.urandom(256 * 1024 * 3 + 5)
    chunked.write_path("chunked.bin", data)
    assert chunked.read_path("chunked.bin") == data
    assert chunked.list_objects("chunked")[0]["size"] == len(data)
    with pytest.raises(ValidationError, match="chunk_size must be a multiple of 262144"):
        GcsBucket(bucket_name="b-x", chunk_size=300 * 1024)


def test_folders_up_and_down(bucket, tmp_path):
    local = tmp_path / "export"
    (local / "a").mkdir(parents=True)
    (local / "top.txt").write_text("top")
    (local / "a" / "inner.txt").write_text("inner")
    assert bucket.upload_from_folder(local, "exports/1") == ["exports/1/a/inner.txt", "exports/1/top.txt"]
    out = bucket.download_folder_to_path("exports/1", tmp_path / "back")
    assert (out / "top.txt").read_text() == "top" and (out / "a" / "inner.txt").read_text() == "inner"
    with pytest.raises(NotADirectoryError):
        bucket.upload_from_folder(tmp_path / "nothing")


def test_listing_pages_limits_and_describes(bucket):
    for i in range(7):
        bucket.write_path(f"p/{i}.txt", b"x" * i)
    listed = bucket.list_objects("p/", page_size=2)
    assert [o["path"] for o in listed] == [f"p/{i}.txt" for i in range(7)]
    assert [o["size"] for o in listed] == list(range(7))
    first = listed[1]
    assert first["md5_hash"] and first["generation"] and first["updated"].startswith("20")
    assert len(bucket.list_objects("p/", max_items=3)) == 3
    with pytest.raises(ValueError, match="page_size must be between 1 and 1000"):
        bucket.list_objects(page_size=0)
    with pytest.raises(ValueError, match="max_items must be at least 1"):
        bucket.list_objects(max_items=0)


def test_copy_and_move_within_and_across_buckets(credentials, bucket, new_bucket_name):
    bucket.write_path("in/a.csv", b"a")
    assert bucket.copy_object("in/a.csv", "copy/a.csv") == "copy/a.csv"
    assert bucket.read_path("copy/a.csv") == b"a"

    other = GcsBucket(bucket_name=new_bucket_name("plait-other"), bucket_folder="archive", credentials=credentials)
    assert bucket.copy_object("in/a.csv", "a.csv", to_bucket=other) == "archive/a.csv"
    assert other.read_path("a.csv") == b"a"
    assert bucket.copy_object("in/a.csv", "full/name.csv", to_bucket=other.bucket_name) == "full/name.csv"
    assert other.list_paths() == ["a.csv"]  # full/name.csv is outside the folder

    assert bucket.move_object("in/a.csv", "done/a.csv") == "done/a.csv"
    assert not bucket.exists("in/a.csv") and bucket.read_path("done/a.csv") == b"a"
    bucket.move_object("done/a.csv", "done/a.csv")  # onto itself: kept
    assert bucket.exists("done/a.csv")
    with pytest.raises(FileNotFoundError, match=f"no object gs://{bucket.bucket_name}/in/a.csv"):
        bucket.copy_object("in/a.csv", "x.csv")


def test_delete_many(bucket):
    for name in ("t/a", "t/b", "t/c"):
        bucket.write_path(name, b"1")
    assert bucket.delete_objects(["t/a", "t/b", "t/never"]) == ["t/a", "t/b", "t/never"]
    assert bucket.list_paths() == ["t/c"]


def test_a_missing_bucket_is_a_gcp_error_naming_it(credentials):
    missing = GcsBucket(bucket_name="plait-no-such-bucket", credentials=credentials)
    with pytest.raises(GcpError) as caught:
        missing.list_objects()
    assert caught.value.code == 404
    assert "listing gs://plait-no-such-bucket/ (bucket 'plait-no-such-bucket') failed: Google answered 404" \
        in str(caught.value)


def test_bucket_names_are_checked():
    with pytest.raises(ValidationError, match="without 'gs://'"):
        GcsBucket(bucket_name="gs://lake")
    with pytest.raises(ValidationError, match="put the folder in bucket_folder"):
        GcsBucket(bucket_name="lake/raw")
    with pytest.raises(ValidationError, match="may not contain '.' or '..'"):
        GcsBucket(bucket_name="lake", bucket_folder="a/../b")
