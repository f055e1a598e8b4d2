"""Secrets never show: repr, str, JSON, the saved document, error messages, logs."""

from __future__ import annotations

import json
import logging
import socket
from urllib.parse import quote, unquote

import pytest

from plait import flow, get_run_logger, task
from plait.blocks import block_to_dict, load_document
from plait_azure import AzureBlobCredentials, AzureBlobStorageContainer, AzureError, blob_list, blob_upload

KEY = "cGxhaXQtbWFzay1tZS1hY2NvdW50LWtleS05ZjhlN2Q2YzViNGE="
SAS = "sv=2024-08-04&ss=b&srt=sco&sp=rl&se=2030-01-01T00%3A00%3A00Z&sig=plaitMaskMeSignature0123%2B%2F%3D"
CONNECTION = f"DefaultEndpointsProtocol=https;AccountName=maskme;AccountKey={KEY};EndpointSuffix=core.windows.net"
FORMS = {
    "connection-string": lambda: AzureBlobCredentials(connection_string=CONNECTION),
    "account-key": lambda: AzureBlobCredentials(account_name="maskme", account_key=KEY),
    "sas": lambda: AzureBlobCredentials(account_url="https://maskme.blob.core.windows.net", sas_token=SAS),
}


def _leaks(text: str, *secrets: str) -> list[str]:
    return [s for s in secrets if s in text or quote(s, safe="") in text]


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("wrap", [False, True], ids=["credentials", "container"])
def test_secrets_are_masked_in_repr_str_and_json(form, wrap):
    block = FORMS[form]()
    if wrap:
        block = AzureBlobStorageContainer(container_name="lake", credentials=block)
    for text in (repr(block), str(block), block.model_dump_json(), json.dumps(block_to_dict(block)),
                 json.dumps(block.model_dump(mode="json"))):
        assert not _leaks(text, KEY, SAS, CONNECTION), text
    fields = type(block).secret_fields()
    prefix = "credentials." if wrap else ""
    assert {f"{prefix}connection_string", f"{prefix}account_key", f"{prefix}sas_token"} <= set(fields)


def test_saved_blocks_are_encrypted_and_load_back(plait_harness):
    box = AzureBlobStorageContainer(container_name="lake", container_folder="f", credentials=FORMS["sas"]())
    box.save("masked")
    AzureBlobCredentials(connection_string=CONNECTION).save("conn")
    raw = b"".join(p.read_bytes() for p in plait_harness.home.rglob("*") if p.is_file())
    assert raw and not _leaks(raw.decode("latin-1"), KEY, SAS, "plaitMaskMeSignature")
    loaded = load_document("azure-blob-storage-container/masked")
    assert loaded == box and loaded.credentials.sas_token.get_secret_value() == SAS


def test_connection_errors_do_not_carry_secrets():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for credentials in (AzureBlobCredentials(account_name="maskme", account_key=KEY,
                                             account_url=f"http://127.0.0.1:{port}/maskme"),
                        AzureBlobCredentials(account_url=f"http://127.0.0.1:{port}/maskme", sas_token=SAS)):
        with pytest.raises(AzureError) as caught:
            credentials.test_connection()
        assert caught.value.__cause__ is None  # the SDK's exception, which may quote the URL, is not chained
        for text in (str(caught.value), repr(caught.value)):
            assert not _leaks(text, KEY, SAS, "plaitMaskMeSignature"), text


def test_error_explanations_mask_the_secrets_of_a_block_never_saved():
    """A block built in code (so nothing registered its secrets) passed to ``explain``: its
    secrets, and the key or signature inside a connection string or SAS, are masked as they
    are, repr-, JSON- and URL-escaped."""
    from azure.core.exceptions import HttpResponseError

    from plait_azure.credentials import explain

    signature = "plaitMaskMeSignature0123%2B%2F%3D"
    message = (f"String to sign used {SAS!r}; key {json.dumps(KEY)}, {quote(KEY, safe='')}; "
               f"signature {signature} / {unquote(signature)}")
    exc = HttpResponseError(message=message)
    key_block = FORMS["account-key"]()
    for block in (key_block, AzureBlobStorageContainer(container_name="lake", credentials=key_block),
                  FORMS["connection-string"]()):
        text = explain(exc, block)
        assert not _leaks(text, KEY) and "String to sign" in text, text
    text = explain(exc, FORMS["sas"]())
    assert not _leaks(text, SAS, signature, unquote(signature)), text


def test_wrong_credentials_against_azurite_do_not_leak(azurite_url, container, make_sas):
    wrong_key = KEY
    bad = AzureBlobStorageContainer(container_name=container.container_name, credentials=AzureBlobCredentials(
        account_name="devstoreaccount1", account_key=wrong_key, account_url=azurite_url))
    with pytest.raises(AzureError, match="403") as caught:
        bad.write_path("x.txt", b"x")
    assert not _leaks(str(caught.value), wrong_key)
    forged = make_sas(read=True)[:-6] + "AAAA%3D"  # a signature Azurite rejects
    by_sas = AzureBlobStorageContainer(container_name=container.container_name, credentials=AzureBlobCredentials(
        account_url=azurite_url, sas_token=forged))
    with pytest.raises(AzureError, match="403") as caught:
        by_sas.list_paths()
    assert not _leaks(str(caught.value), forged, forged.split("sig=")[1])


def test_logs_of_a_flow_carry_no_secret(plait_harness, azurite_url, container, make_sas, caplog, tmp_path):
    """SDK debug logging on, a flow that logs its block and fails on a missing blob: neither
    Python's log records nor the run's recorded logs and states hold the SAS or the key."""
    sas = make_sas()
    signature = sas.split("sig=")[1].split("&")[0]
    box = AzureBlobStorageContainer(container_name=container.container_name,
                                    credentials=AzureBlobCredentials(account_url=azurite_url, sas_token=sas))
    source = tmp_path / "a.txt"
    source.write_text("a")

    @task
    def describe(target: AzureBlobStorageContainer) -> str:
        get_run_logger().info("using %r", target)
        return repr(target.credentials)

    @flow
    def logged(local: str) -> None:
        describe(box)
        blob_upload(box, local, "a.txt")
        blob_list(box)
        box.read_path("missing.txt")

    caplog.set_level(logging.DEBUG)
    logging.getLogger("azure").setLevel(logging.DEBUG)
    state = logged(str(source), return_state=True)
    assert state.type.value == "FAILED"
    assert any("azure" in r.name for r in caplog.records)  # the SDK did log its requests
    assert not _leaks(caplog.text, sas, signature)
    run = plait_harness.flow_run(plait_harness.flow_runs()[0]["id"])
    recorded = json.dumps(plait_harness.logs(run["id"])) + json.dumps(run, default=str)
    assert "using AzureBlobStorageContainer(" in recorded and "no blob" in recorded
    assert not _leaks(recorded, sas, signature)


def test_an_empty_block_masks_the_secrets_it_took_from_the_environment(monkeypatch):
    from azure.core.exceptions import HttpResponseError

    from plait_azure.credentials import explain

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", CONNECTION)
    exc = HttpResponseError(message=f"bad key {KEY} in {CONNECTION}")
    text = explain(exc, AzureBlobStorageContainer(container_name="lake"))
    assert not _leaks(text, KEY, CONNECTION) and "bad key" in text, text
