"""plait's collection conventions for plait-snowflake (plait.testing.CollectionSuite): discovery,
declarations, block conformance, the exported API, the import rules (pandas stays optional),
and the examples of README.md and docs/collections/plait-snowflake.md.

The docs' ```python blocks run in order, as scripts sharing one PLAIT_HOME. Blocks that only
save blocks run as they are (saving connects to nothing). Before a block with a flow, the
saved "analytics" connector is pointed at the fakesnow server (in the same script), so the
flow runs against it with the real connector.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import plait_snowflake
from plait.testing import CollectionSuite
from plait_snowflake import SnowflakeConnector, SnowflakeCredentials
from plait_snowflake.tasks import TASKS

# A syntactically valid PEM body: the suite never connects, so the key is never loaded.
PEM = (
    "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQww\n"
    "-----END ENCRYPTED PRIVATE KEY-----\n"
)
KEY_PAIR_CREDENTIALS = SnowflakeCredentials(
    account="xy12345.eu-west-1", user="ETL_SERVICE", private_key=PEM, private_key_passphrase="key-pass-123",
)

REDIRECT = """\
from plait_snowflake import SnowflakeConnector, SnowflakeCredentials

credentials = SnowflakeCredentials(
    account="plait-test", user="tester", password="docs-pw-1234", host="127.0.0.1", port={port}, protocol="http",
    login_timeout=10, connect_args={{"network_timeout": 5}},
    session_parameters={{"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False, "CLIENT_TELEMETRY_ENABLED": False}},
)
credentials.save("snowflake-etl", overwrite=True)
connector = SnowflakeConnector(credentials=credentials, database="{database}", schema_name="PUBLIC")
connector.save("analytics", overwrite=True)
"""
COLLECTION = Path(__file__).resolve().parents[1]
PAGES = [COLLECTION / "README.md", COLLECTION.parents[1] / "docs" / "collections" / "plait-snowflake.md"]


class TestPlaitSnowflake(CollectionSuite):
    package = plait_snowflake
    examples = {
        SnowflakeCredentials: [
            SnowflakeCredentials(
                account="myorg-myaccount", user="ETL", password="s3cr3t-pass", role="TRANSFORMER",
                session_parameters={"TIMEZONE": "UTC"}, query_tag="plait", login_timeout=30,
            ),
            KEY_PAIR_CREDENTIALS,
            SnowflakeCredentials(
                account="myorg-myaccount", user="ETL_SERVICE", private_key_path=Path("/secrets/rsa_key.p8"),
                private_key_passphrase="key-pass-123", host="myorg-myaccount.privatelink.snowflakecomputing.com",
                connect_args={"client_session_keep_alive": True},
            ),
            SnowflakeCredentials(account="myorg-myaccount", token="oauth-token-abc"),
        ],
        SnowflakeConnector: [SnowflakeConnector(credentials=KEY_PAIR_CREDENTIALS, warehouse="TRANSFORMING",
                                                database="ANALYTICS", schema_name="PUBLIC", fetch_size=500)],
    }
    docs = ["README.md", "../../docs/collections/plait-snowflake.md"]
    docs_timeout = 120
    tasks = TASKS
    flows = ["snowflake_copy_run_history"]
    requires_plait = ">=0.1,<0.2"
    optional_imports = ("pandas",)
    exports = [
        "PandasNotInstalledError", "SnowflakeConnectionError", "SnowflakeConnector", "SnowflakeCredentials",
        "SnowflakeCredentialsError", "snowflake_copy_run_history", "snowflake_load_dataframe", "snowflake_load_rows", "snowflake_multi_query",
        "snowflake_query",
    ]

    def docs_script(self, code: str, request: pytest.FixtureRequest) -> str:
        if "@flow" not in code:
            return code
        # the saved blocks point at fakesnow first (in the same process: faster)
        port, database = request.getfixturevalue("fakesnow_port"), request.getfixturevalue("database")
        return REDIRECT.format(port=port, database=database) + "\n" + code


def test_the_registered_tasks_are_these() -> None:
    # the suite checks that the plugin registers exactly TASKS
    assert {t.name for t in TASKS} == {
        "snowflake_query", "snowflake_multi_query", "snowflake_load_rows", "snowflake_load_dataframe",
    }


def test_credentials_have_the_credentials_capability() -> None:
    assert "credentials" in SnowflakeCredentials.capabilities


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_each_docs_page_shows_a_flow(page: Path) -> None:
    if not page.exists():
        pytest.skip(f"{page} is not here (installed without the repository)")
    blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)
    assert any("@flow" in code for code in blocks), f"{page.name} has no ```python flow example"
