"""plait's collection conventions for plait-gcp (plait.testing.CollectionSuite): discovery,
declarations, block conformance, the exported API, the import rules and the examples of
README.md and docs/collections/plait-gcp.md (run against the emulator); and what the suite
does not cover: the gs scheme and loading by slug."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import plait_gcp
from plait.blocks import Block
from plait.testing import CollectionSuite
from plait_gcp import GcpCredentials, GcsBucket, gcs_bucket_from_url
from plait_gcp.tasks import TASKS


def _generated_key(email: str) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return {"type": "service_account", "project_id": "analytics-prod", "private_key_id": "0f1e2d3c4b5a69788796a5b4",
            "private_key": pem, "client_email": email, "client_id": "104293847561234567890",
            "token_uri": "https://oauth2.googleapis.com/token"}


KEY = _generated_key("plait-runner@analytics-prod.iam.gserviceaccount.com")
CREDENTIALS = GcpCredentials(service_account_info=KEY, project="analytics-prod")
EMULATOR = GcpCredentials(project="plait-test", api_endpoint="http://127.0.0.1:9023", anonymous=True)
DOCS_PORT = "http://127.0.0.1:9023"  # the emulator address the docs show; the test's real one replaces it
# The docs' examples read a key file, upload report.csv and use the bucket "analytics": made first.
DOCS_SETUP = """\
import pathlib

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

pathlib.Path("plait-runner-key.json").write_text({key})
pathlib.Path("report.csv").write_text("id,total\\n1,9.5\\n")
_client = storage.Client(project="plait-test", credentials=AnonymousCredentials(),
                         client_options={{"api_endpoint": {endpoint!r}}})
if not _client.bucket("analytics").exists():
    _client.create_bucket("analytics")
del _client
"""
PAGES = [Path(__file__).resolve().parents[1] / "README.md",
         Path(__file__).resolve().parents[3] / "docs" / "collections" / "plait-gcp.md"]


class TestPlaitGcp(CollectionSuite):
    package = plait_gcp
    examples = {
        GcpCredentials: [CREDENTIALS, EMULATOR,
                         GcpCredentials(service_account_file="/var/secrets/google/key.json", project="analytics-prod")],
        GcsBucket: [GcsBucket(bucket_name="analytics", bucket_folder="plait/results", credentials=CREDENTIALS,
                              chunk_size=8 * 1024 * 1024, timeout=30, retry_timeout=60)],
    }
    docs = ["README.md", "../../docs/collections/plait-gcp.md"]
    docs_timeout = 60
    tasks = TASKS
    requires_plait = ">=0.1,<0.2"
    exports = [
        "GcpCredentials", "GcpError", "GcsBucket", "__version__", "clear_client_cache", "default_credentials",
        "gcs_bucket_from_url", "gcs_copy", "gcs_delete", "gcs_download", "gcs_list_objects", "gcs_move", "gcs_upload",
    ]

    def conformance_checks(self, example: Block) -> list[str] | None:
        from plait.testing import BLOCK_CONFORMANCE_CHECKS

        if isinstance(example, GcpCredentials) and example.service_account_info is None:
            # no key set (an emulator, a key file): there is no secret value to check masking with
            return [name for name in BLOCK_CONFORMANCE_CHECKS if name != "secrets-masked"]
        return None

    def docs_env(self, request: pytest.FixtureRequest) -> dict[str, str]:
        # google-cloud-storage's own switch: credentials without a key reach the emulator
        return request.getfixturevalue("gcs_env")

    def docs_script(self, code: str, request: pytest.FixtureRequest) -> str:
        endpoint = request.getfixturevalue("gcs_endpoint")
        setup = DOCS_SETUP.format(key=repr(json.dumps(KEY)), endpoint=endpoint)
        return setup + "\n" + code.replace(DOCS_PORT, endpoint)


def test_the_registered_tasks_are_these() -> None:
    # the suite checks that the plugin registers exactly TASKS
    assert {t.name for t in TASKS} == {
        "gcs_upload", "gcs_download", "gcs_list_objects", "gcs_copy", "gcs_move", "gcs_delete",
    }


def test_blocks_have_their_capabilities() -> None:
    assert set(GcsBucket.capabilities) >= {"read-path", "write-path", "list-paths", "delete-path"}
    assert "credentials" in GcpCredentials.capabilities
    assert GcpCredentials.secret_fields() == ["service_account_info"]
    assert GcsBucket.secret_fields() == ["credentials.service_account_info"]


def test_gs_scheme_is_registered(plait_harness):
    from plait.results import resolve_storage

    storage = resolve_storage("gs://discovered/prefix")
    assert isinstance(storage, GcsBucket) and storage.uri == "gs://discovered/prefix"
    assert gcs_bucket_from_url("gs://discovered/prefix") == storage


def test_blocks_load_by_slug(plait_harness):
    GcsBucket(bucket_name="lake", credentials=GcpCredentials(project="analytics-prod")).save("lake")
    loaded = Block.load("gcs-bucket/lake")
    assert isinstance(loaded, GcsBucket) and loaded.credentials.project == "analytics-prod"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_each_docs_page_shows_a_flow_with_gs_result_storage(page: Path) -> None:
    import re

    if not page.exists():
        pytest.skip(f"{page} is not here (installed without the repository)")
    blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)
    assert any("@flow" in code and "gs://" in code for code in blocks), f"{page.name} has no gs:// flow example"
