"""The prebuilt blob tasks inside a flow, against Azurite, with the run history read back."""

from __future__ import annotations

from pathlib import Path

from plait import flow
from plait_azure import AzureBlobStorageContainer, blob_copy, blob_delete, blob_download, blob_list, blob_upload


def test_blob_tasks_in_a_flow(plait_harness, container, credentials, new_container_name, tmp_path):
    archive = AzureBlobStorageContainer(container_name=new_container_name("plait-archive"),
                                        container_folder="archive", credentials=credentials)
    source = tmp_path / "orders.csv"
    source.write_text("id\n1\n2\n")

    @flow
    def shuffle_blobs(local: str) -> dict:
        name = blob_upload(container, local, "incoming/orders.csv")
        copied = blob_copy(container, "incoming/orders.csv", "backup/orders.csv")
        archived = blob_copy(container, "backup/orders.csv", "orders.csv", to_container=archive)
        listed = blob_list(container, "incoming/")
        first = blob_list(container, max_items=1)
        downloaded = blob_download(archive, "orders.csv", str(tmp_path / "back" / "orders.csv"))
        deleted = blob_delete(container, ["incoming/orders.csv", "backup/orders.csv"])
        one = blob_delete(archive, "orders.csv")
        return {"name": name, "copied": copied, "archived": archived, "listed": listed, "first": first,
                "downloaded": downloaded, "deleted": deleted, "one": one}

    out = shuffle_blobs(str(source))
    assert out["name"] == "incoming/orders.csv" and out["copied"] == "backup/orders.csv"
    assert out["archived"] == "archive/orders.csv"
    assert [(b["name"], b["path"], b["size"]) for b in out["listed"]] == [
        ("incoming/orders.csv", "incoming/orders.csv", 7)]
    assert out["listed"][0]["last_modified"].startswith("20") and out["listed"][0]["etag"]
    assert [b["name"] for b in out["first"]] == ["backup/orders.csv"]
    assert Path(out["downloaded"]).read_text() == "id\n1\n2\n"
    assert out["deleted"] == ["incoming/orders.csv", "backup/orders.csv"] and out["one"] == ["archive/orders.csv"]
    assert container.list_paths() == [] and archive.list_paths() == []

    run = plait_harness.flow_runs()[0]
    assert run["state_type"] == "COMPLETED"
    tasks = plait_harness.flow_run(run["id"])["task_runs"]
    assert sorted(t["task_name"] for t in tasks) == sorted(
        ["blob_upload", "blob_copy", "blob_copy", "blob_list", "blob_list", "blob_download", "blob_delete",
         "blob_delete"])
    assert {t["state_type"] for t in tasks} == {"COMPLETED"}


def test_a_failing_task_fails_the_run_with_the_reason(plait_harness, container):
    @flow
    def fetch_missing() -> str:
        return blob_download(container, "nope.csv", "nope.csv")

    state = fetch_missing(return_state=True)
    assert state.type.value == "FAILED"
    tasks = plait_harness.flow_run(plait_harness.flow_runs()[0]["id"])["task_runs"]
    assert [(t["task_name"], t["state_type"]) for t in tasks] == [("blob_download", "FAILED")]
    assert f"no blob az://{container.container_name}/nope.csv" in (tasks[0].get("state_message") or "")
