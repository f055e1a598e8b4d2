"""GcpCredentials: the forms a service account key takes, its validation, the default chain
(isolated from this machine), anonymous emulator access and test_connection."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from plait.testing import free_port
from plait_gcp import GcpCredentials, GcpError


def _verify(info: dict[str, str], data: bytes, signature: bytes) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    public = serialization.load_pem_private_key(info["private_key"].encode(), password=None).public_key()
    public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())  # raises when it does not match


@pytest.mark.parametrize("form", ["json-text", "dict", "secret-str", "bytes"])
def test_a_service_account_key_in_any_form_signs_as_the_account(service_account_info, form):
    text = json.dumps(service_account_info)
    given = {"json-text": text, "dict": service_account_info, "secret-str": SecretStr(text),
             "bytes": text.encode()}[form]
    credentials = GcpCredentials(service_account_info=given)
    assert isinstance(credentials.service_account_info, SecretStr)
    assert json.loads(credentials.service_account_info.get_secret_value()) == service_account_info
    assert credentials.client_email == "plait-runner@plait-keys.iam.gserviceaccount.com"

    google_credentials, project = credentials.get_credentials()
    assert google_credentials.service_account_email == credentials.client_email
    assert project == "plait-keys"  # the key's project_id when the block names none
    signature = google_credentials.sign_bytes(b"gs://analytics/report.csv")
    _verify(service_account_info, b"gs://analytics/report.csv", signature)
    assert GcpCredentials(service_account_info=given, project="analytics-prod").get_credentials()[1] == "analytics-prod"


def test_an_empty_key_means_none():
    assert GcpCredentials(service_account_info="  ").service_account_info is None


@pytest.mark.parametrize(("text", "expected"), [
    ('{"type": "service_account", "private_key": ', "is not valid JSON (Expecting value at line 1 column 44)"),
    ("[1, 2]", "must be a JSON object (a key file), not a list"),
    ('{"type": "authorized_user", "client_id": "x", "refresh_token": "r"}',
     "is not a service account key (its \"type\" must be \"service_account\"; it is 'authorized_user';"),
    ('{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nAA\\n-----END PRIVATE KEY-----\\n"}',
     "lacks client_email, token_uri; download a new JSON key"),
])
def test_invalid_keys_are_refused_naming_the_block_and_the_problem(text, expected):
    with pytest.raises(ValidationError) as caught:
        GcpCredentials(service_account_info=text)
    message = str(caught.value)
    assert "GcpCredentials" in message and "service_account_info" in message
    assert expected in message, message


def test_a_private_key_that_is_no_pem_is_refused(service_account_info):
    with pytest.raises(ValidationError, match="private_key is not a PEM private key"):
        GcpCredentials(service_account_info={**service_account_info, "private_key": "c2VjcmV0LWtleS1ieXRlcw=="})


def test_a_pem_that_does_not_load_is_a_clear_error(service_account_info):
    broken = {**service_account_info, "private_key": "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"}
    credentials = GcpCredentials(service_account_info=broken)
    with pytest.raises(GcpError, match=r"the service account key of 'plait-runner@plait-keys\.iam\.gserviceaccount"
                                       r"\.com' does not load .*; download a new key"):
        credentials.get_credentials()


def test_sources_that_exclude_each_other_are_refused(service_account_info, key_file):
    with pytest.raises(ValidationError, match="give service_account_info or service_account_file, not both"):
        GcpCredentials(service_account_info=service_account_info, service_account_file=str(key_file))
    with pytest.raises(ValidationError, match="anonymous=True sends no credentials"):
        GcpCredentials(service_account_info=service_account_info, anonymous=True)
    with pytest.raises(ValidationError, match="api_endpoint must start with http:// or https://"):
        GcpCredentials(api_endpoint="127.0.0.1:9023")


def test_a_key_file_is_read_when_connecting(key_file, tmp_path, service_account_info):
    credentials = GcpCredentials(service_account_file=str(key_file))
    google_credentials, project = credentials.get_credentials()
    assert (google_credentials.service_account_email, project) == (service_account_info["client_email"], "plait-keys")

    missing = tmp_path / "gone.json"
    with pytest.raises(GcpError, match=rf"cannot read service_account_file '{missing}'.*fix the path"):
        GcpCredentials(service_account_file=str(missing)).get_credentials()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GcpError, match=rf"service_account_file '{bad}' is not valid JSON"):
        _ = GcpCredentials(service_account_file=str(bad)).client_email


def test_the_default_chain_finds_google_application_credentials(monkeypatch, key_file, service_account_info):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    google_credentials, project = GcpCredentials().get_credentials()
    assert google_credentials.service_account_email == service_account_info["client_email"]
    assert project == "plait-keys"
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-the-environment")
    assert GcpCredentials().get_credentials()[1] == "from-the-environment"
    assert GcpCredentials(project="from-the-block").get_credentials()[1] == "from-the-block"


def test_no_credentials_anywhere_is_a_clear_error_and_fast():
    started = time.monotonic()
    with pytest.raises(GcpError, match="no Google credentials found; set service_account_info or "
                                       "service_account_file on the GcpCredentials block"):
        GcpCredentials().get_storage_client()
    assert time.monotonic() - started < 5  # no metadata server was waited for


def test_anonymous_credentials_reach_the_emulator(credentials, new_bucket_name):
    name = new_bucket_name()
    client = credentials.get_storage_client()
    assert client is credentials.get_storage_client()  # cached per configuration
    assert client.project == "plait-test"
    assert name in [b.name for b in client.list_buckets()]
    credentials.test_connection()


def test_storage_emulator_host_alone_is_honoured(gcs_env):
    credentials = GcpCredentials()
    assert credentials.endpoint == gcs_env["STORAGE_EMULATOR_HOST"]
    from google.auth.credentials import AnonymousCredentials

    google_credentials, project = credentials.get_credentials()
    assert isinstance(google_credentials, AnonymousCredentials) and project == "plait-test"
    credentials.test_connection()


def test_connection_errors_say_where_and_are_fast():
    endpoint = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(GcpError) as caught:
        GcpCredentials(project="p", api_endpoint=endpoint, anonymous=True).test_connection()
    assert time.monotonic() - started < 15
    assert f"GCP connection test at {endpoint} (listing buckets of project 'p') failed: could not connect to " \
           f"{endpoint}; check api_endpoint" in str(caught.value)


def test_connection_test_needs_a_project(gcs_endpoint):
    with pytest.raises(GcpError, match="no project; set project on the GcpCredentials block"):
        GcpCredentials(api_endpoint=gcs_endpoint, anonymous=True).test_connection()


def test_credentials_save_and_load(plait_harness, service_account_info):
    GcpCredentials(service_account_info=service_account_info, project="analytics-prod").save("prod")
    loaded = GcpCredentials.load("prod")
    assert loaded.client_email == service_account_info["client_email"] and loaded.project == "analytics-prod"
    assert json.loads(loaded.service_account_info.get_secret_value()) == service_account_info


def test_key_file_path_is_not_required_to_exist_when_built(tmp_path: Path):
    # the file is read when connecting (it may be mounted only where the flow runs)
    assert GcpCredentials(service_account_file=str(tmp_path / "later.json")).service_account_file
