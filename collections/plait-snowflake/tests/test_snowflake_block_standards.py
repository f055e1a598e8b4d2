"""Every block of the collection passes plait's block conformance suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from plait.blocks import Block
from plait.testing import assert_block_conforms
from plait_snowflake import SnowflakeConnector, SnowflakeCredentials

# A syntactically valid PEM body: the suite never connects, so the key is never loaded.
PEM = (
    "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQww\n"
    "-----END ENCRYPTED PRIVATE KEY-----\n"
)

PASSWORD_CREDENTIALS = SnowflakeCredentials(
    account="myorg-myaccount", user="ETL", password="s3cr3t-pass", role="TRANSFORMER",
    session_parameters={"TIMEZONE": "UTC"}, query_tag="plait", login_timeout=30,
)
KEY_PAIR_CREDENTIALS = SnowflakeCredentials(
    account="xy12345.eu-west-1", user="ETL_SERVICE", private_key=PEM, private_key_passphrase="key-pass-123",
)
KEY_FILE_CREDENTIALS = SnowflakeCredentials(
    account="myorg-myaccount", user="ETL_SERVICE", private_key_path=Path("/secrets/rsa_key.p8"),
    private_key_passphrase="key-pass-123", host="myorg-myaccount.privatelink.snowflakecomputing.com",
    connect_args={"client_session_keep_alive": True},
)
OAUTH_CREDENTIALS = SnowflakeCredentials(account="myorg-myaccount", token="oauth-token-abc")

EXAMPLES: list[tuple[type[Block], Block]] = [
    (SnowflakeCredentials, PASSWORD_CREDENTIALS),
    (SnowflakeCredentials, KEY_PAIR_CREDENTIALS),
    (SnowflakeCredentials, KEY_FILE_CREDENTIALS),
    (SnowflakeCredentials, OAUTH_CREDENTIALS),
    (SnowflakeConnector, SnowflakeConnector(credentials=KEY_PAIR_CREDENTIALS, warehouse="TRANSFORMING",
                                            database="ANALYTICS", schema_name="PUBLIC", fetch_size=500)),
]


@pytest.mark.parametrize(
    ("cls", "example"), EXAMPLES,
    ids=["credentials-password", "credentials-key-pair", "credentials-key-file", "credentials-oauth", "connector"],
)
def test_block_conforms(cls: type[Block], example: Block) -> None:
    assert_block_conforms(cls, example)


def test_every_registered_block_has_an_example() -> None:
    from plait_snowflake.plugin import BLOCK_CLASSES

    assert set(BLOCK_CLASSES) == {cls for cls, _ in EXAMPLES}
