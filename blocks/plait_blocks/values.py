"""Value blocks: a named secret string and a named JSON document."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, JsonValue, SecretStr

from plait.blocks import Block

__all__ = ["Secret", "JSON"]


class Secret(Block):
    """A secret string (an API token, a password) saved encrypted and loaded by name.

    The value is masked in repr, logs and JSON output; ``get()`` returns it in clear.
    """

    block_type_slug: ClassVar[str] = "secret"
    block_type_name: ClassVar[str] = "Secret"
    capabilities: ClassVar[tuple[str, ...]] = ("secret",)
    code_example: ClassVar[str] = """\
from plait_blocks import Secret

Secret(value="s3cr3t-token").save("api-token")

token = Secret.load("api-token").get()
"""

    value: SecretStr = Field(description="The secret text; stored encrypted, shown as '**********'.")

    def get(self) -> str:
        """The secret in clear text."""
        return self.value.get_secret_value()


class JSON(Block):
    """Any JSON value (object, array, string, number, boolean or null) saved by name.

    Use it for small pieces of configuration shared by flows, such as a list of tables or
    a mapping of thresholds. It is not encrypted; use ``Secret`` for sensitive values.
    """

    block_type_slug: ClassVar[str] = "json"
    block_type_name: ClassVar[str] = "JSON"
    capabilities: ClassVar[tuple[str, ...]] = ()
    code_example: ClassVar[str] = """\
from plait_blocks import JSON

JSON(value={"tables": ["orders", "customers"], "max_rows": 10000}).save("etl-config")

config = JSON.load("etl-config").get()
"""

    value: JsonValue = Field(description="The JSON value: object, array, string, number, boolean or null.")

    def get(self) -> JsonValue:
        """The stored value."""
        return self.value
