"""The prebuilt tasks, inside a flow, against the emulator: each recorded as a task run."""

from __future__ import annotations

from pathlib import Path

from plait import flow
from plait_gcp import (
    GcsBucket,
    gcs_copy,
    gcs_delete,
    gcs_download,
    gcs_list_objects,
    gcs_move,
    gcs_upload,
)


def test_every_task_in_one_flow(plait_harness, bucket: GcsBucket, credentials, new_bucket_name, tmp_path: Path):
    archive = GcsBucket(bucket_name=new_bucket_name("plait-archive"), bucket_folder="old", credentials=credentials)
    (tmp_path / "export").mkdir()
    for name in ("a.csv", "b.csv"):
        (tmp_path / "export" / name).write_text(f"{name}\n")

    @flow
    def nightly(local: str) -> dict:
        uploaded = [gcs_upload(bucket, file, f"incoming/{file.name}") for file in sorted(Path(local).glob("*.csv"))]
        default_name = gcs_upload(bucket, Path(local) / "a.csv")
        listed = gcs_list_objects(bucket, prefix="incoming/")
        copied = gcs_copy(bucket, "incoming/a.csv", "copies/a.csv")
        across = gcs_copy(bucket, "incoming/a.csv", "a.csv", to_bucket=archive)
        moved = gcs_move(bucket, "incoming/b.csv", "done/b.csv")
        downloaded = gcs_download(bucket, "done/b.csv", str(tmp_path / "back" / "b.csv"))
        deleted = gcs_delete(bucket, ["incoming/a.csv", "a.csv"])
        one = gcs_delete(bucket, "copies/a.csv")
        limited = gcs_list_objects(bucket, max_items=1)
        return {"uploaded": uploaded, "default_name": default_name, "listed": listed, "copied": copied,
                "across": across, "moved": moved, "downloaded": downloaded, "deleted": deleted, "one": one,
                "limited": [o["path"] for o in limited]}

    out = nightly(str(tmp_path / "export"))
    assert out["uploaded"] == ["incoming/a.csv", "incoming/b.csv"]
    assert out["default_name"] == "a.csv"
    assert [(o["name"], o["path"], o["size"]) for o in out["listed"]] == [
        ("incoming/a.csv", "incoming/a.csv", 6), ("incoming/b.csv", "incoming/b.csv", 6)]
    assert all(o["updated"] and o["md5_hash"] for o in out["listed"])
    assert out["copied"] == "copies/a.csv" and out["across"] == "old/a.csv" and out["moved"] == "done/b.csv"
    assert Path(out["downloaded"]).read_text() == "b.csv\n"
    assert out["deleted"] == ["incoming/a.csv", "a.csv"] and out["one"] == ["copies/a.csv"]
    assert out["limited"] == ["done/b.csv"]
    assert bucket.list_paths() == ["done/b.csv"]
    assert archive.read_path("a.csv") == b"a.csv\n"

    [run] = plait_harness.flow_runs()
    detail = plait_harness.flow_run(run["id"])
    assert sorted({t["task_name"] for t in detail["task_runs"]}) == [
        "gcs_copy", "gcs_delete", "gcs_download", "gcs_list_objects", "gcs_move", "gcs_upload"]
    assert len(detail["task_runs"]) == 11
    assert all(t["state_type"] == "COMPLETED" for t in detail["task_runs"])


def test_a_failing_task_fails_with_the_gcp_error(plait_harness, credentials):
    missing = GcsBucket(bucket_name="plait-no-such-bucket", credentials=credentials)

    @flow
    def lists() -> list:
        return gcs_list_objects(missing)

    state = lists(return_state=True)
    assert state.type.value == "FAILED"
    assert state.message.startswith("GcpError: listing gs://plait-no-such-bucket/ (bucket 'plait-no-such-bucket') "
                                    "failed: Google answered 404")
