"""plait's collection conventions for plait-azure (plait.testing.CollectionSuite): discovery,
declarations, block conformance, the exported API, the import rules, and the README's and
the docs page's examples (run against Azurite); plus what the suite does not cover: the az
scheme and loading by slug."""

from __future__ import annotations

import pytest

import plait_azure
from plait.blocks import Block
from plait.testing import CollectionSuite
from plait_azure import AzureBlobCredentials, AzureBlobStorageContainer, az_container_from_url
from plait_azure.tasks import TASKS

KEY = "ZXhhbXBsZS1hY2NvdW50LWtleS1mb3ItcGxhaXQtYXp1cmUtdGVzdHM="
CREDENTIALS = [
    AzureBlobCredentials(connection_string=f"DefaultEndpointsProtocol=https;AccountName=analytics;AccountKey={KEY};"
                                           "EndpointSuffix=core.windows.net"),
    AzureBlobCredentials(account_name="analytics", account_key=KEY),
    AzureBlobCredentials(account_url="https://analytics.blob.core.windows.net",
                         sas_token="sv=2024-08-04&ss=b&srt=sco&sp=rl&se=2030-01-01&sig=ZXhhbXBsZQ%3D%3D"),
]
# The docs' examples use containers "analytics" and "archive", and read report.csv: made first.
SETUP = """\
import os, pathlib
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

_service = BlobServiceClient.from_connection_string(os.environ["AZURE_STORAGE_CONNECTION_STRING"])
for _name in ("analytics", "archive"):
    try:
        _service.create_container(_name)
    except ResourceExistsError:
        pass
pathlib.Path("report.csv").write_text("id,total\\n1,9.5\\n2,3.0\\n")
"""


class TestPlaitAzure(CollectionSuite):
    package = plait_azure
    examples = {
        AzureBlobCredentials: CREDENTIALS,
        AzureBlobStorageContainer: [AzureBlobStorageContainer(
            container_name="analytics", container_folder="plait/results", credentials=CREDENTIALS[1],
            max_concurrency=8)],
    }
    docs = ["README.md", "../../docs/collections/plait-azure.md"]
    tasks = TASKS
    requires_plait = ">=0.1,<0.2"
    optional_imports = ("azure",)  # the SDK loads when a client is first needed, not with the plugin


    def docs_env(self, request: pytest.FixtureRequest) -> dict[str, str]:
        return request.getfixturevalue("azure_env")  # AZURE_STORAGE_CONNECTION_STRING -> Azurite

    def docs_script(self, code: str, request: pytest.FixtureRequest) -> str:
        return SETUP + "\n" + code


def test_the_registered_tasks_are_these() -> None:
    assert {t.name for t in TASKS} == {"blob_upload", "blob_download", "blob_list", "blob_copy", "blob_delete"}


def test_blocks_have_their_capabilities() -> None:
    assert set(AzureBlobStorageContainer.capabilities) >= {"read-path", "write-path", "list-paths", "delete-path"}
    assert "credentials" in AzureBlobCredentials.capabilities


def test_az_scheme_is_registered(plait_harness):
    from plait.results import resolve_storage

    storage = resolve_storage("az://discovered/prefix")
    assert isinstance(storage, AzureBlobStorageContainer) and storage.uri == "az://discovered/prefix"
    assert az_container_from_url("az://discovered/prefix") == storage


def test_blocks_load_by_slug(plait_harness):
    AzureBlobStorageContainer(container_name="lake", credentials=CREDENTIALS[1]).save("lake")
    loaded = Block.load("azure-blob-storage-container/lake")
    assert isinstance(loaded, AzureBlobStorageContainer) and loaded.credentials.account_name == "analytics"
    assert loaded.credentials.account_key.get_secret_value() == KEY
