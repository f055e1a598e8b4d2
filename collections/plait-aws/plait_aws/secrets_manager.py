"""``AwsSecret``: one secret in AWS Secrets Manager, read, written and deleted by name."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, SecretBytes, SecretStr, field_validator

from plait.blocks import Block
from plait_aws.credentials import AwsCredentials, aws_errors, error_code

__all__ = ["AwsSecret"]


class AwsSecret(Block):
    """A secret stored in AWS Secrets Manager: read its value, write a new one, delete it.

    The block holds only the secret's name and the credentials to reach it; the value stays
    in Secrets Manager and is fetched when ``read_secret()`` is called.
    """

    block_type_slug: ClassVar[str] = "aws-secret"
    block_type_name: ClassVar[str] = "AWS Secret"
    capabilities: ClassVar[tuple[str, ...]] = ("read-secret", "write-secret", "delete-secret")
    code_example: ClassVar[str] = """\
from plait_aws import AwsCredentials, AwsSecret

AwsSecret(secret_name="prod/warehouse-password", credentials=AwsCredentials.load("default")).save("warehouse")

secret = AwsSecret.load("warehouse")
password = secret.read_secret()
secret.write_secret("a-new-password")
"""

    secret_name: str = Field(min_length=1, max_length=2048, description="Name or ARN of the secret.")
    credentials: AwsCredentials = Field(
        default_factory=AwsCredentials,
        description="AWS credentials (and region) to reach Secrets Manager; empty: boto3's credential chain.",
    )

    @field_validator("secret_name")
    @classmethod
    def _strip(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("secret_name may not be blank")
        return value.strip()

    @property
    def _client(self) -> Any:
        return self.credentials.get_client("secretsmanager")

    def _errors(self, action: str, *, missing: bool = False) -> Any:
        where = f"{action} secret {self.secret_name!r}"
        absent = f"no secret {self.secret_name!r} in Secrets Manager" if missing else None
        return aws_errors(where, self.credentials, missing=absent)

    def read_secret(self, version_id: str | None = None, version_stage: str | None = None) -> str | bytes:
        """The secret's value (``str``, or ``bytes`` for a binary secret); the current version
        unless ``version_id`` or ``version_stage`` (e.g. ``"AWSPREVIOUS"``) says otherwise.

        Raises:
            FileNotFoundError: No such secret (or version).
            AwsError: Any other failure (access denied, secret scheduled for deletion…).
        """
        arguments: dict[str, Any] = {"SecretId": self.secret_name}
        if version_id:
            arguments["VersionId"] = version_id
        if version_stage:
            arguments["VersionStage"] = version_stage
        with self._errors("reading", missing=True):
            response = self._client.get_secret_value(**arguments)
        if "SecretString" in response:
            return str(response["SecretString"])
        return bytes(response["SecretBinary"])

    def write_secret(self, value: str | bytes | SecretStr | SecretBytes) -> str:
        """Store ``value`` as the secret's new current version, creating the secret when it
        does not exist yet; return the secret's ARN."""
        if isinstance(value, (SecretStr, SecretBytes)):
            value = value.get_secret_value()
        if not isinstance(value, (str, bytes, bytearray)):
            raise TypeError(f"a secret value is str or bytes, got {type(value).__name__}")
        payload: dict[str, Any] = (
            {"SecretString": value} if isinstance(value, str) else {"SecretBinary": bytes(value)}
        )
        with self._errors("writing"):
            try:
                response = self._client.put_secret_value(SecretId=self.secret_name, **payload)
            except Exception as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
                response = self._client.create_secret(Name=self.secret_name, **payload)
        return str(response["ARN"])

    def delete_secret(
        self, recovery_window_in_days: int | None = None, force_delete_without_recovery: bool = False
    ) -> str:
        """Schedule the secret for deletion after ``recovery_window_in_days`` (7 to 30; AWS's
        default is 30), or delete it at once with ``force_delete_without_recovery``; return
        the deletion date (ISO 8601).

        Raises:
            ValueError: Both options given, or a window outside 7..30.
            FileNotFoundError: No such secret (with a recovery window; forcing the deletion
                of a missing secret succeeds, as in AWS).
        """
        if force_delete_without_recovery and recovery_window_in_days is not None:
            raise ValueError("give recovery_window_in_days or force_delete_without_recovery, not both")
        arguments: dict[str, Any] = {"SecretId": self.secret_name}
        if force_delete_without_recovery:
            arguments["ForceDeleteWithoutRecovery"] = True
        elif recovery_window_in_days is not None:
            if not 7 <= recovery_window_in_days <= 30:
                raise ValueError(f"recovery_window_in_days must be between 7 and 30, got {recovery_window_in_days}")
            arguments["RecoveryWindowInDays"] = recovery_window_in_days
        with self._errors("deleting", missing=True):
            response = self._client.delete_secret(**arguments)
        deleted = response.get("DeletionDate")
        return deleted.isoformat() if hasattr(deleted, "isoformat") else str(deleted or "")
