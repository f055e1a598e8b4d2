"""Every block of the collection passes plait's block conformance suite."""

from __future__ import annotations

import pytest

from plait.blocks import Block
from plait.testing import assert_block_conforms
from plait_sqlalchemy import AsyncSqlAlchemyConnector, DatabaseCredentials, SqlAlchemyConnector

FIELD_CREDENTIALS = DatabaseCredentials(
    driver="postgresql+psycopg", host="db.example.com", port=5432, database="analytics",
    username="etl", password="s3cr3t-pass", query={"sslmode": "require"},
)
URL_CREDENTIALS = DatabaseCredentials(url="postgresql+asyncpg://etl:s3cr3t-pass@db.example.com:5432/analytics")

EXAMPLES: list[tuple[type[Block], Block]] = [
    (DatabaseCredentials, FIELD_CREDENTIALS),
    (DatabaseCredentials, URL_CREDENTIALS),
    (SqlAlchemyConnector, SqlAlchemyConnector(credentials=FIELD_CREDENTIALS, fetch_size=50,
                                              engine_kwargs={"pool_pre_ping": True})),
    (AsyncSqlAlchemyConnector, AsyncSqlAlchemyConnector(credentials=URL_CREDENTIALS)),
]


@pytest.mark.parametrize(
    ("cls", "example"), EXAMPLES, ids=["credentials-fields", "credentials-url", "connector", "async-connector"]
)
def test_block_conforms(cls: type[Block], example: Block) -> None:
    assert_block_conforms(cls, example)


def test_every_registered_block_has_an_example() -> None:
    from plait_sqlalchemy.plugin import BLOCK_CLASSES

    assert set(BLOCK_CLASSES) == {cls for cls, _ in EXAMPLES}
