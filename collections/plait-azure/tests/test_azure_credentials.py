"""AzureBlobCredentials: every form Azurite accepts connects; incomplete forms are refused
with errors naming the block; DefaultAzureCredential is used when only an account is given."""

from __future__ import annotations

import socket
import sys

import pytest
from pydantic import ValidationError

from plait_azure import AzureBlobCredentials, AzureBlobStorageContainer, AzureError

ACCOUNT = "devstoreaccount1"
KEY = "KEY"  # replaced by the development account's key in the test


def _round_trip(credentials: AzureBlobCredentials, container_name: str) -> None:
    credentials.test_connection()
    box = AzureBlobStorageContainer(container_name=container_name, credentials=credentials)
    box.write_path("probe.txt", b"through " + credentials.settings()[0].encode())
    assert box.read_path("probe.txt") == b"through " + credentials.settings()[0].encode()


def test_connection_string(connection_string, new_container_name):
    credentials = AzureBlobCredentials(connection_string=connection_string)
    assert credentials.settings()[0] == "connection-string"
    assert credentials.endpoint().endswith(f"/{ACCOUNT}")
    _round_trip(credentials, new_container_name())


def test_account_name_and_key(credentials, new_container_name):
    assert credentials.settings()[0] == "account-key"
    _round_trip(credentials, new_container_name())


def test_account_url_and_sas_token(azurite_url, new_container_name, make_sas):
    credentials = AzureBlobCredentials(account_url=azurite_url, sas_token="?" + make_sas())
    assert credentials.settings()[0] == "sas"
    assert not credentials.sas_token.get_secret_value().startswith("?")  # the '?' is dropped
    _round_trip(credentials, new_container_name())


def test_a_read_only_sas_cannot_write(azurite_url, container, make_sas):
    container.write_path("x.txt", b"x")
    reader = AzureBlobCredentials(account_url=azurite_url, sas_token=make_sas(read=True, list=True))
    box = AzureBlobStorageContainer(container_name=container.container_name, credentials=reader)
    assert box.read_path("x.txt") == b"x"
    with pytest.raises(AzureError, match=r"writing az://.*/y.txt .* failed: Azure returned 403") as caught:
        box.write_path("y.txt", b"y")
    assert caught.value.code == "AuthorizationPermissionMismatch"


def test_an_empty_block_reads_the_environment(azure_env, new_container_name, monkeypatch, azurite_url, dev_account):
    credentials = AzureBlobCredentials()
    assert credentials.settings()[0] == "connection-string"
    _round_trip(credentials, new_container_name())
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", ACCOUNT)
    monkeypatch.setenv("AZURE_STORAGE_KEY", dev_account[1])
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_URL", azurite_url)
    assert credentials.settings()[0] == "account-key"
    _round_trip(credentials, new_container_name())


@pytest.mark.parametrize("values, message", [
    ({"account_key": KEY}, "account_key needs account_name"),
    ({"account_key": KEY, "account_url": "http://127.0.0.1:1/x"}, "account_key needs account_name"),
    ({"sas_token": "sv=2024&sig=abc"}, "sas_token needs account_url"),
    ({"account_name": ACCOUNT, "account_key": KEY, "sas_token": "sv=1"}, "account_key or sas_token, not both"),
    ({"connection_string": "AccountName=a;AccountKey=b", "account_name": "a"}, "connection_string holds the whole"),
    ({"account_url": "127.0.0.1:10000"}, "account_url must be an http"),
    ({"account_url": "https://a.blob.core.windows.net?sv=1"}, "put a SAS token in sas_token"),
], ids=["key-alone", "key-with-url", "sas-alone", "key-and-sas", "connection-string-and-more", "url", "url-query"])
def test_incomplete_combinations_are_refused(values, message, dev_account):
    values = {name: dev_account[1] if value == KEY else value for name, value in values.items()}
    with pytest.raises(ValidationError, match=message) as caught:
        AzureBlobCredentials(**values)
    text = str(caught.value)
    assert "AzureBlobCredentials" in text
    key = dev_account[1]
    assert key[:8] not in text and key[-12:] not in text  # pydantic would quote the input, shortened


def test_nothing_configured_says_what_to_set():
    with pytest.raises(AzureError, match="AzureBlobCredentials names no storage account: set connection_string"):
        AzureBlobCredentials().get_service_client()


def test_an_incomplete_environment_names_the_block_and_the_variables(monkeypatch, dev_account):
    monkeypatch.setenv("AZURE_STORAGE_KEY", dev_account[1])
    with pytest.raises(AzureError, match=r"AzureBlobCredentials \(empty, so from the AZURE_STORAGE_\* environment "
                                         r"variables\): account_key needs account_name") as caught:
        AzureBlobCredentials().get_service_client()
    assert dev_account[1] not in str(caught.value)


def test_only_an_account_uses_default_azure_credential(monkeypatch):
    from azure.identity import DefaultAzureCredential

    client = AzureBlobCredentials(account_name="plaitexample").get_service_client()
    assert client.url == "https://plaitexample.blob.core.windows.net/"
    assert isinstance(client.credential, DefaultAzureCredential)
    by_url = AzureBlobCredentials(account_url="https://other.blob.core.windows.net/").get_service_client()
    assert by_url.url == "https://other.blob.core.windows.net/"


def test_default_azure_credential_without_azure_identity_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "azure.identity", None)  # as if the extra were not installed
    with pytest.raises(AzureError, match=r"needs azure-identity: pip install 'plait-azure\[identity\]'"):
        AzureBlobCredentials(account_name="plaitnoidentity").get_service_client()


def test_a_wrong_key_fails_the_connection_test(azurite_url, dev_account):
    wrong = dev_account[1][:-6] + "AAAA=="
    with pytest.raises(AzureError, match="connection test at .* failed: Azure returned 403 AuthorizationFailure") as e:
        AzureBlobCredentials(account_name=ACCOUNT, account_key=wrong, account_url=azurite_url).test_connection()
    assert e.value.code == "AuthorizationFailure" and wrong not in str(e.value)


def test_an_unreachable_endpoint_fails_the_connection_test(dev_account):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    credentials = AzureBlobCredentials(account_name=ACCOUNT, account_key=dev_account[1],
                                       account_url=f"http://127.0.0.1:{port}/{ACCOUNT}")
    with pytest.raises(AzureError, match="could not reach the storage endpoint"):
        credentials.test_connection()


def test_clients_are_cached_per_configuration(credentials, connection_string):
    assert credentials.get_service_client() is credentials.get_service_client()
    assert AzureBlobCredentials(connection_string=connection_string).get_service_client() \
        is not credentials.get_service_client()


@pytest.mark.parametrize("values, message", [
    ({"connection_string": "garbage-plait-secret"}, "creating a blob client .* Connection string is either blank or malformed"),
    ({"account_name": ACCOUNT, "account_key": "not base64 plait!", "account_url": "http://127.0.0.1:9/x"},
     "authentication failed .* invalid shared key"),
], ids=["malformed-connection-string", "key-not-base64"])
def test_malformed_secrets_are_azure_errors_without_the_secret(values, message):
    with pytest.raises(AzureError, match=message) as caught:
        AzureBlobCredentials(**values).test_connection()
    assert "plait-secret" not in str(caught.value) and "base64 plait!" not in str(caught.value)
