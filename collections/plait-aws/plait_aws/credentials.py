"""``AwsCredentials``: how plait reaches AWS (or an S3-compatible store), and its errors.

Every field is optional. What a block leaves empty, boto3 finds the usual way (its standard
credential chain: ``AWS_*`` environment variables, ``~/.aws`` profiles, SSO, the instance or
container role), so ``AwsCredentials()`` behaves exactly like ``boto3.client(...)``.

Clients are cached per process, per service and per configuration (the block's values plus
the ``AWS_*`` environment), so building an ``S3Bucket`` for every task run costs nothing
after the first.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from plait import mask_secrets
from plait.blocks import Block, CredentialsBlock
from plait.exceptions import PlaitError

__all__ = ["AwsClientParameters", "AwsCredentials", "AwsError"]

_USER_AGENT = "plait-aws"
# Error codes meaning "no such object/secret" across S3 and Secrets Manager.
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound", "ResourceNotFoundException"})


class AwsError(PlaitError):
    """An AWS call failed; the message says what was attempted and why, never a secret.

    Attributes:
        code: The AWS error code (``"AccessDenied"``, ``"NoSuchBucket"``…) when AWS sent one.
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class AwsClientParameters(BaseModel):
    """Options for every boto3 client the credentials create."""

    model_config = ConfigDict(extra="forbid")

    use_ssl: bool = Field(True, description="Use HTTPS (ignored when endpoint_url names a scheme).")
    verify: bool | str | None = Field(
        None,
        description="Verify TLS certificates: true, false, or the path of a CA bundle; empty: boto3's "
        "default (verify, with AWS_CA_BUNDLE or the profile's ca_bundle if set).",
    )
    api_version: str | None = Field(None, description="A specific API version of the service.")
    config: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "botocore Config options, e.g. {'retries': {'max_attempts': 5, 'mode': 'standard'}, "
            "'signature_version': 's3v4', 's3': {'addressing_style': 'path'}, 'connect_timeout': 10}."
        ),
    )

    @field_validator("verify", mode="before")
    @classmethod
    def _verify_flag(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.strip().lower() in ("true", "1", "yes")
        return value

    @field_validator("config")
    @classmethod
    def _known_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        from botocore.config import Config

        unknown = sorted(set(value) - set(Config.OPTION_DEFAULTS))
        if unknown:
            raise ValueError(
                f"unknown botocore Config option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(Config.OPTION_DEFAULTS))}"
            )
        try:
            Config(**value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid botocore Config options: {exc}") from None
        return value


class AwsCredentials(CredentialsBlock):
    """Credentials and connection settings for AWS or an S3-compatible store.

    Fields left empty fall back to boto3's standard credential chain (environment variables
    such as ``AWS_ACCESS_KEY_ID``/``AWS_PROFILE``/``AWS_DEFAULT_REGION``/``AWS_ENDPOINT_URL``,
    the shared config and credentials files, SSO, instance and container roles). With
    ``role_arn`` set, the credentials found are used to assume that role through STS, and
    the role's temporary credentials are renewed before they expire.
    """

    model_config = ConfigDict(hide_input_in_errors=True)  # never echo a secret key back
    block_type_slug: ClassVar[str] = "aws-credentials"
    block_type_name: ClassVar[str] = "AWS Credentials"
    code_example: ClassVar[str] = """\
from plait_aws import AwsCredentials

AwsCredentials(region_name="eu-west-1", profile_name="analytics").save("default")

credentials = AwsCredentials.load("default")
credentials.test_connection()
s3 = credentials.get_client("s3")
print(s3.list_buckets()["Buckets"])
"""

    aws_access_key_id: str | None = Field(
        None, description="Access key id; empty: boto3's credential chain (env, profile, role)."
    )
    aws_secret_access_key: SecretStr | None = Field(
        None, description="Secret access key that goes with aws_access_key_id."
    )
    aws_session_token: SecretStr | None = Field(
        None, description="Session token, for temporary credentials."
    )
    profile_name: str | None = Field(
        None, description="A profile of the shared AWS config/credentials files (~/.aws)."
    )
    region_name: str | None = Field(
        None, description="AWS region, e.g. 'eu-west-1'; empty: AWS_DEFAULT_REGION or the profile's."
    )
    role_arn: str | None = Field(
        None, description="ARN of an IAM role to assume through STS with the credentials above."
    )
    role_session_name: str = Field(
        "plait", min_length=2, max_length=64, description="Session name used when assuming role_arn."
    )
    external_id: str | None = Field(
        None, description="External id the role's trust policy requires, if any."
    )
    endpoint_url: str | None = Field(
        None,
        description="Endpoint for every service, for S3-compatible stores (MinIO, Ceph…) or local "
        "emulators, e.g. 'http://127.0.0.1:9000'.",
    )
    client_parameters: AwsClientParameters = Field(
        default_factory=AwsClientParameters,
        description="Options for every client: verify, use_ssl, api_version and botocore config "
        "(retries, signature_version, s3 addressing_style, timeouts…).",
    )

    @field_validator("aws_access_key_id", "profile_name", "region_name", "role_arn", "external_id", "endpoint_url")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if isinstance(value, str) else value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_is_url(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("http://", "https://")):
            raise ValueError(f"endpoint_url must start with http:// or https://, got {value!r}")
        return value

    @model_validator(mode="after")
    def _complete_keys(self) -> AwsCredentials:
        has_id, has_secret = self.aws_access_key_id is not None, self.aws_secret_access_key is not None
        if has_id != has_secret:
            missing = "aws_secret_access_key" if has_id else "aws_access_key_id"
            raise ValueError(f"aws_access_key_id and aws_secret_access_key go together: set {missing} too")
        if self.aws_session_token is not None and not has_id:
            raise ValueError("aws_session_token needs aws_access_key_id and aws_secret_access_key")
        return self

    # -- sessions and clients --------------------------------------------------------------
    def get_session(self) -> Any:
        """A ``boto3.Session`` with these credentials (the assumed role's, with role_arn).

        Raises:
            AwsError: The profile does not exist, or the role cannot be assumed.
        """
        return self._connection().session

    def get_client(self, service_name: str) -> Any:
        """A boto3 client for ``service_name`` (``"s3"``, ``"secretsmanager"``…), cached.

        The same client comes back for the same service and configuration within a process,
        so calling this per operation is cheap; boto3 clients are thread-safe.

        Raises:
            AwsError: The session cannot be made (see ``get_session``), or the service is
                unknown to boto3, or no region is configured for a regional service.
        """
        connection = self._connection()
        with connection.lock:
            client = connection.clients.get(service_name)
            if client is None:
                with aws_errors(f"creating a {service_name} client", self):
                    client = connection.session.client(service_name, **self.client_kwargs())
                connection.clients[service_name] = client
        return client

    def client_kwargs(self, *, quick: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``session.client(...)``: endpoint, TLS and botocore config.

        ``quick`` caps retries and timeouts (used by ``test_connection``).
        """
        from botocore.config import Config

        from plait_aws import __version__

        params = self.client_parameters
        config = Config(user_agent_extra=f"{_USER_AGENT}/{__version__}")
        if params.config:
            config = config.merge(Config(**params.config))
        if quick:
            config = config.merge(
                Config(retries={"total_max_attempts": 2, "mode": "standard"}, connect_timeout=10, read_timeout=30)
            )
        kwargs: dict[str, Any] = {"config": config, "use_ssl": params.use_ssl}
        if params.verify is not None:
            kwargs["verify"] = params.verify
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if params.api_version:
            kwargs["api_version"] = params.api_version
        return kwargs

    def test_connection(self) -> None:
        """Ask STS who these credentials belong to; return None when that works.

        An ``endpoint_url`` store without STS (MinIO and friends) is tested with S3
        ``list_buckets`` instead.

        Raises:
            AwsError: What failed and why, with secret values masked.
        """
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            NoRegionError,
        )

        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        session = self.get_session()
        try:
            _sts(session, self.client_kwargs(quick=True)).get_caller_identity()
            return None
        except (EndpointConnectionError, NoCredentialsError, NoRegionError) as exc:
            raise AwsError(f"AWS connection test failed{where}: {explain(exc, self)}", code=error_code(exc)) from None
        except (ClientError, BotoCoreError) as exc:
            if not self.endpoint_url:
                raise AwsError(f"AWS connection test failed: {explain(exc, self)}", code=error_code(exc)) from None
            sts_problem = explain(exc, self)
        try:  # an S3-compatible store without STS
            s3_kwargs = self.client_kwargs(quick=True)
            if session.region_name is None:
                s3_kwargs["region_name"] = _GLOBAL_REGION
            session.client("s3", **s3_kwargs).list_buckets()
        except (ClientError, BotoCoreError) as exc:
            raise AwsError(
                f"AWS connection test failed{where}: STS: {sts_problem}; S3 list_buckets: {explain(exc, self)}",
                code=error_code(exc),
            ) from None
        return None

    # -- internals -------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        values = {name: _plain(getattr(self, name)) for name in type(self).model_fields}
        env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
        raw = json.dumps([type(self).__qualname__, values, env, os.getpid()], sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()

    def _connection(self) -> _Connection:
        key = self._fingerprint()
        with _CACHE_LOCK:
            connection = _CACHE.get(key)
            if connection is not None and not connection.expiring():
                _CACHE.move_to_end(key)
                return connection
        connection = self._connect()
        with _CACHE_LOCK:
            _CACHE[key] = connection
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        return connection

    def _connect(self) -> _Connection:
        import boto3
        from botocore.exceptions import ProfileNotFound

        try:
            session = boto3.Session(
                aws_access_key_id=self.aws_access_key_id,
                aws_secret_access_key=_reveal(self.aws_secret_access_key),
                aws_session_token=_reveal(self.aws_session_token),
                profile_name=self.profile_name,
                region_name=self.region_name,
            )
        except ProfileNotFound:
            raise AwsError(
                f"AWS profile {self.profile_name!r} is not in the shared config/credentials files "
                "(~/.aws/config, ~/.aws/credentials, or AWS_CONFIG_FILE/AWS_SHARED_CREDENTIALS_FILE); "
                "add it with `aws configure --profile NAME` or fix profile_name"
            ) from None
        if not self.role_arn:
            return _Connection(session)
        arguments = {"RoleArn": self.role_arn, "RoleSessionName": self.role_session_name}
        if self.external_id:
            arguments["ExternalId"] = self.external_id
        with aws_errors(f"assuming role {self.role_arn}", self):
            response = _sts(session, self.client_kwargs()).assume_role(**arguments)
        temporary = response["Credentials"]
        assumed = boto3.Session(
            aws_access_key_id=temporary["AccessKeyId"],
            aws_secret_access_key=temporary["SecretAccessKey"],
            aws_session_token=temporary["SessionToken"],
            region_name=session.region_name,
        )
        expiration = temporary.get("Expiration")
        if isinstance(expiration, datetime) and expiration.tzinfo is None:
            expiration = expiration.replace(tzinfo=UTC)
        return _Connection(assumed, expires_at=expiration if isinstance(expiration, datetime) else None)


_GLOBAL_REGION = "us-east-1"  # where STS (a global service) is asked when no region is configured


def _sts(session: Any, kwargs: dict[str, Any]) -> Any:
    if session.region_name is None:
        kwargs = {**kwargs, "region_name": _GLOBAL_REGION}
    return session.client("sts", **kwargs)


# -- the per-process cache of sessions and clients ----------------------------------------------
_CACHE_SIZE = 32
_RENEW_BEFORE = timedelta(minutes=5)
_CACHE_LOCK = threading.Lock()


@dataclass
class _Connection:
    session: Any
    expires_at: datetime | None = None
    clients: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def expiring(self) -> bool:
        return self.expires_at is not None and datetime.now(UTC) >= self.expires_at - _RENEW_BEFORE


_CACHE: OrderedDict[str, _Connection] = OrderedDict()


def clear_client_cache() -> None:
    """Forget every cached session and client (the next call makes new ones)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


# -- turning botocore errors into clear messages ----------------------------------------------
def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError (``"NoSuchKey"``…), else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def explain(exc: BaseException, credentials: Block | None = None) -> str:
    """One line saying why a boto3 call failed and what to do; secret values masked."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ReadTimeoutError,
    )

    if isinstance(exc, EndpointConnectionError):
        url = exc.kwargs.get("endpoint_url", "?")
        text = f"could not connect to {url}; check endpoint_url/region and that the service is reachable"
    elif isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
        text = (
            f"timed out ({exc}); check the network, or raise connect_timeout/read_timeout in "
            "client_parameters.config"
        )
    elif isinstance(exc, NoCredentialsError):
        text = (
            "no AWS credentials found; set aws_access_key_id and aws_secret_access_key or profile_name "
            "on the AwsCredentials block, or configure boto3 (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, ~/.aws/credentials, an instance role)"
        )
    elif isinstance(exc, NoRegionError):
        text = "no AWS region configured; set region_name on the AwsCredentials block or AWS_DEFAULT_REGION"
    elif isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        message = error.get("Message") or "no message"
        text = f"{exc.operation_name} returned {code}: {message}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    # The block's own secrets may not be registered yet (a block built in code, never saved).
    return mask_secrets(text, extra=[credentials] if credentials is not None else [])


@contextmanager
def aws_errors(action: str, credentials: Block | None, *, missing: str | None = None) -> Iterator[None]:
    """Turn botocore/boto3 errors raised inside into ``AwsError("<action> failed: ...")``.

    With ``missing``, an error meaning "no such object/secret" becomes
    ``FileNotFoundError(missing)`` instead.
    """
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError, Boto3Error) as exc:
        code = error_code(exc)
        if missing is not None and code in MISSING_CODES:
            raise FileNotFoundError(missing) from None
        raise AwsError(f"{action} failed: {explain(exc, credentials)}", code=code) from exc
