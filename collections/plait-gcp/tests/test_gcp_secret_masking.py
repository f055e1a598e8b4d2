"""The service account key never shows: repr, JSON, the saved document, validation errors,
connection errors, task parameters, state messages and run logs."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from plait import flow
from plait.blocks import block_to_dict, load_document
from plait.testing import free_port
from plait_gcp import GcpCredentials, GcpError, GcsBucket, gcs_list_objects


def _leaks(info: dict[str, str]) -> list[str]:
    """Pieces of the key that must never be shown: the whole JSON, the key, its body lines."""
    body = [line for line in info["private_key"].splitlines() if not line.startswith("-----")]
    return [json.dumps(info), info["private_key"], info["private_key_id"], *body]


def _assert_clean(text: str, info: dict[str, str]) -> None:
    for piece in _leaks(info):
        assert piece not in text, f"the key shows in: {text[:300]}"


@pytest.mark.parametrize("kind", ["credentials", "gcs-bucket"])
def test_the_key_is_masked_in_repr_and_json(service_account_info, kind):
    credentials = GcpCredentials(service_account_info=service_account_info, project="p")
    block = credentials if kind == "credentials" else GcsBucket(bucket_name="lake", credentials=credentials)
    for text in (repr(block), str(block), block.model_dump_json(), json.dumps(block_to_dict(block)),
                 json.dumps(block.model_dump(mode="json"))):
        _assert_clean(text, service_account_info)
    assert {"service_account_info", "credentials.service_account_info"} & set(type(block).secret_fields())


def test_saved_blocks_are_encrypted_and_load_back(plait_harness, service_account_info):
    bucket = GcsBucket(bucket_name="lake", bucket_folder="f",
                       credentials=GcpCredentials(service_account_info=service_account_info))
    bucket.save("masked")
    raw = b"".join(p.read_bytes() for p in plait_harness.home.rglob("*.db*") if p.is_file())
    assert raw and service_account_info["private_key_id"].encode() not in raw
    assert service_account_info["private_key"].splitlines()[1].encode() not in raw
    loaded = load_document("gcs-bucket/masked")
    assert loaded == bucket
    assert json.loads(loaded.credentials.service_account_info.get_secret_value()) == service_account_info


def test_validation_errors_do_not_quote_the_key(service_account_info):
    broken = json.dumps(service_account_info)[:-1]  # the closing brace lost in a copy and paste
    with pytest.raises(ValidationError) as caught:
        GcpCredentials(service_account_info=broken)
    assert "is not valid JSON" in str(caught.value)
    # (pydantic's errors() carries the input unless asked not to: include_input=False)
    for text in (str(caught.value), repr(caught.value),
                 json.dumps(caught.value.errors(include_url=False, include_input=False), default=str)):
        _assert_clean(text, service_account_info)
    without_email = {k: v for k, v in service_account_info.items() if k != "client_email"}
    with pytest.raises(ValidationError) as caught:
        GcpCredentials(service_account_info=without_email)
    assert "lacks client_email" in str(caught.value)
    _assert_clean(str(caught.value), service_account_info)


def test_a_bucket_with_an_invalid_nested_key_does_not_quote_it(service_account_info):
    # pydantic lets the outermost model decide whether errors quote the input
    broken = json.dumps(service_account_info)[:-1]
    with pytest.raises(ValidationError) as caught:
        GcsBucket(bucket_name="lake", credentials={"service_account_info": broken}, timeout=-1)
    message = str(caught.value)
    assert "credentials.service_account_info" in message and "is not valid JSON" in message
    assert "timeout" in message
    _assert_clean(message, service_account_info)
    _assert_clean(repr(caught.value), service_account_info)


def test_errors_of_a_flow_keep_the_key_out_of_messages_parameters_and_logs(plait_harness, service_account_info,
                                                                            gcs_endpoint):
    # a real key whose token endpoint is a closed port: getting an access token fails
    token_uri = f"http://127.0.0.1:{free_port()}/token"
    credentials = GcpCredentials(service_account_info={**service_account_info, "token_uri": token_uri},
                                 project="plait-test", api_endpoint=gcs_endpoint)
    bucket = GcsBucket(bucket_name="plait-masked", credentials=credentials, timeout=5, retry_timeout=0)

    @flow
    def leaky() -> list:
        return gcs_list_objects.with_options(retries=0)(bucket)

    state = leaky(return_state=True)
    assert state.type.value == "FAILED"
    assert "listing gs://plait-masked/ (bucket 'plait-masked') failed:" in state.message
    [run] = plait_harness.flow_runs()
    detail = plait_harness.flow_run(run["id"])
    logs = plait_harness.logs(run["id"])
    assert any("GcpError" in entry["message"] for entry in logs)
    everything = json.dumps([detail, logs, state.message], default=str)
    _assert_clean(everything, {**service_account_info, "token_uri": token_uri})


def test_connection_errors_do_not_carry_the_key(service_account_info):
    endpoint = f"http://127.0.0.1:{free_port()}"
    credentials = GcpCredentials(service_account_info=service_account_info, project="p", api_endpoint=endpoint)
    with pytest.raises(GcpError) as caught:
        credentials.test_connection()
    for text in (str(caught.value), repr(caught.value)):
        _assert_clean(text, service_account_info)


def test_error_explanations_mask_every_form_of_the_key(service_account_info):
    """A message quoting the key (or only a line of its body), from a block built in code
    and never saved (so nothing registered its secret), comes out masked."""
    from google.api_core.exceptions import Forbidden

    from plait_gcp.credentials import explain

    credentials = GcpCredentials(service_account_info=service_account_info)
    line = service_account_info["private_key"].splitlines()[3]
    exc = Forbidden(f"signed with {service_account_info['private_key']!r} and {line} by "
                    f"{service_account_info['private_key_id']}")
    for block in (credentials, GcsBucket(bucket_name="lake", credentials=credentials).credentials):
        text = explain(exc, block)
        assert text.startswith("Google answered 403: signed with "), text
        _assert_clean(text, service_account_info)
