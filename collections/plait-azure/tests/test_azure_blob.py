"""AzureBlobStorageContainer against Azurite: the storage interface, files, listing, copying
and deleting, and the errors for what is not there."""

from __future__ import annotations

import io

import pytest
from pydantic import ValidationError

from plait_azure import AzureBlobStorageContainer, AzureError


def test_storage_round_trip_in_a_folder(container):
    box = container.model_copy(update={"container_folder": "plait/results"})
    assert box.uri == f"az://{container.container_name}/plait/results"
    assert box.write_path("a/b.bin", b"\x00\x01payload") == "plait/results/a/b.bin"
    assert box.read_path("a/b.bin") == b"\x00\x01payload"
    assert box.exists("a/b.bin") and not box.exists("a/missing.bin")
    box.write_path("a/b.bin", b"replaced")
    assert box.read_path("a/b.bin") == b"replaced"
    container.write_path("outside.txt", b"not in the folder")
    assert box.list_paths() == ["a/b.bin"]
    assert container.list_paths() == ["outside.txt", "plait/results/a/b.bin"]
    box.delete_path("a/b.bin")
    assert not box.exists("a/b.bin") and box.list_paths() == []
    box.delete_path("a/b.bin")  # already gone: no error


def test_a_missing_blob_is_file_not_found(container):
    with pytest.raises(FileNotFoundError, match=rf"no blob az://{container.container_name}/nope.txt"):
        container.read_path("nope.txt")
    with pytest.raises(FileNotFoundError):
        container.download_to_file_object("nope.txt", io.BytesIO())


def test_a_missing_container_says_so(credentials):
    box = AzureBlobStorageContainer(container_name="plait-never-created", credentials=credentials)
    with pytest.raises(AzureError, match="ContainerNotFound.*create the container first") as caught:
        box.write_path("x.txt", b"x")
    assert caught.value.code == "ContainerNotFound"
    assert box.create_container() is True and box.create_container() is False
    box.write_path("x.txt", b"x")
    assert box.list_paths() == ["x.txt"]


def test_files_and_file_objects(container, tmp_path, workdir):
    source = tmp_path / "data" / "orders.csv"
    source.parent.mkdir()
    source.write_bytes(b"id,total\n1,9.5\n" * 1000)
    assert container.upload_from_path(source) == "orders.csv"
    assert container.upload_from_path(source, "in/orders.csv") == "in/orders.csv"
    local = container.download_to_path("in/orders.csv", tmp_path / "back" / "o.csv")
    assert local.read_bytes() == source.read_bytes()
    assert container.download_to_path("orders.csv") == (workdir / "orders.csv").resolve()
    stream = io.BytesIO(b"skipped|kept")
    stream.seek(8)
    container.upload_from_file_object(stream, "part.txt")
    assert container.download_to_file_object("part.txt", io.BytesIO()).getvalue() == b"kept"
    with pytest.raises(FileNotFoundError, match="no file"):
        container.upload_from_path(tmp_path / "absent.csv")
    with pytest.raises(FileNotFoundError):
        container.download_to_path("absent.csv", tmp_path / "absent.csv")
    assert not (tmp_path / "absent.csv").exists() and not (tmp_path / "absent.csv.part").exists()


def test_listing(container):
    for name in ("b/2.txt", "a/1.txt", "b/1.txt", "c.txt"):
        container.write_path(name, name.encode())
    listed = container.list_blobs("b/")
    assert [(b["name"], b["path"], b["size"]) for b in listed] == [("b/1.txt", "b/1.txt", 7), ("b/2.txt", "b/2.txt", 7)]
    assert listed[0]["last_modified"].startswith("20") and listed[0]["etag"]
    assert [b["name"] for b in container.list_blobs(max_items=2)] == ["a/1.txt", "b/1.txt"]
    with pytest.raises(ValueError, match="max_items must be at least 1"):
        container.list_blobs(max_items=0)


def test_copying(container, new_container_name, credentials, sas_credentials):
    container.write_path("src/a.txt", b"copy me")
    assert container.copy_blob("src/a.txt", "dst/a.txt") == "dst/a.txt"
    other = AzureBlobStorageContainer(container_name=new_container_name(), container_folder="in", credentials=credentials)
    assert container.copy_blob("src/a.txt", "a.txt", to_container=other) == "in/a.txt"
    assert container.copy_blob("src/a.txt", "full/a.txt", to_container=other.container_name) == "full/a.txt"
    assert other.list_paths() == ["a.txt"] and other.read_path("a.txt") == b"copy me"
    # other credentials (a SAS) on the target: the bytes stream through this process
    by_sas = other.model_copy(update={"credentials": sas_credentials, "container_folder": "sas"})
    assert container.copy_blob("src/a.txt", "a.txt", to_container=by_sas) == "sas/a.txt"
    assert by_sas.read_path("a.txt") == b"copy me"
    # a SAS-authorised source: Azure copies it, authorised by the URL
    assert by_sas.copy_blob("a.txt", "b.txt") == "sas/b.txt" and by_sas.read_path("b.txt") == b"copy me"
    with pytest.raises(FileNotFoundError, match="no blob"):
        container.copy_blob("src/missing.txt", "x.txt", to_container=by_sas)


def test_deleting_many(container):
    for name in ("x/1", "x/2", "y"):
        container.write_path(name, b".")
    assert container.delete_blobs(["x/1", "x/2", "never-there"]) == ["x/1", "x/2", "never-there"]
    assert container.list_paths() == ["y"]


@pytest.mark.parametrize("values, message", [
    ({"container_name": "az://lake"}, "without 'az://'"),
    ({"container_name": "lake/raw"}, "put the folder in container_folder"),
    ({"container_name": "Lake"}, "not a valid Azure container name"),
    ({"container_name": "ab"}, "not a valid Azure container name"),
    ({"container_name": "lake", "container_folder": "a/../b"}, "may not contain"),
])
def test_invalid_values_are_refused(values, message):
    with pytest.raises(ValidationError, match=message):
        AzureBlobStorageContainer(**values)


def test_folder_is_normalised_and_paths_must_name_blobs():
    box = AzureBlobStorageContainer(container_name="lake", container_folder="/a//b/")
    assert box.container_folder == "a/b" and box.blob_name("c.txt") == "a/b/c.txt"
    assert AzureBlobStorageContainer(container_name="$web").uri == "az://$web"
    with pytest.raises(ValueError, match="does not name a blob"):
        box.blob_name("dir/")
