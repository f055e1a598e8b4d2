"""``SnowflakeCredentials``: which Snowflake account, who logs in, and how.

Five ways to log in, chosen by ``authenticator``:

============================== ================================================ ==================
authenticator                  what it needs                                    Snowflake calls it
============================== ================================================ ==================
``"snowflake"``                user, password                                   password
``"snowflake_jwt"``            user, private_key or private_key_path            key-pair
                               (+ private_key_passphrase if the key is encrypted)
``"oauth"``                    token                                            OAuth
``"externalbrowser"``          user                                             browser SSO
``"https://<org>.okta.com"``   user, password                                   native Okta SSO
============================== ================================================ ==================

Left empty, ``authenticator`` is inferred: a private key means ``snowflake_jwt``, a token
``oauth``, anything else ``snowflake``. Secrets (password, private key, passphrase, token)
are encrypted when saved, masked in ``repr``, JSON and every error message, and only
``connect_kwargs()`` holds them in clear.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from plait import mask_secrets
from plait.blocks import CredentialsBlock
from plait_snowflake.errors import SnowflakeConnectionError, SnowflakeCredentialsError, hint_for, reason_of

if TYPE_CHECKING:
    from snowflake.connector import SnowflakeConnection

__all__ = ["SnowflakeCredentials", "AUTHENTICATORS", "PARAMSTYLE"]

AUTHENTICATORS = ("snowflake", "snowflake_jwt", "oauth", "externalbrowser")
"""The authenticators by keyword; an Okta URL (``https://<org>.okta.com``) is the fifth kind."""

PARAMSTYLE = "qmark"
"""How statements bind values: ``?`` placeholders (or ``:1``, ``:2``), bound by Snowflake
itself (server-side binding), never formatted into the SQL text."""

_OKTA_URL = re.compile(r"^https://[A-Za-z0-9.-]+(:\d+)?/?$")
# connect() options that have a field of their own (secrets among them): not in connect_args.
_RESERVED = frozenset({
    "account", "user", "password", "authenticator", "private_key", "private_key_file", "private_key_file_pwd",
    "private_key_passphrase", "token", "token_file_path", "passcode", "role", "host", "port", "protocol",
    "login_timeout", "session_parameters", "paramstyle", "warehouse", "database", "schema",
})


def _needs(authenticator: str) -> list[str]:
    """What an authenticator needs, by field name (``private_key`` stands for either key field)."""
    if authenticator == "snowflake":
        return ["user", "password"]
    if authenticator == "snowflake_jwt":
        return ["user", "private_key"]
    if authenticator == "oauth":
        return ["token"]
    if authenticator == "externalbrowser":
        return ["user"]
    return ["user", "password"]  # Okta


class SnowflakeCredentials(CredentialsBlock):
    """How to log in to a Snowflake account: password, key pair, OAuth token, browser or Okta SSO.

    ``account`` is the account identifier (``myorg-myaccount``, or ``xy12345.eu-west-1`` for
    a locator). Give what the ``authenticator`` needs; left empty it is inferred (private key:
    key pair, token: OAuth, else password). ``host``, ``port`` and ``protocol`` are for
    non-default endpoints (PrivateLink, a proxy, a local fake such as fakesnow).
    """

    model_config = ConfigDict(hide_input_in_errors=True)  # never echo a key or password back

    block_type_slug: ClassVar[str] = "snowflake-credentials"
    block_type_name: ClassVar[str] = "Snowflake Credentials"
    code_example: ClassVar[str] = """\
from pathlib import Path

from plait_snowflake import SnowflakeCredentials

# key pair (no password needed); authenticator "snowflake_jwt" is inferred from the key
SnowflakeCredentials(
    account="myorg-myaccount", user="ETL_SERVICE", role="TRANSFORMER",
    private_key=Path("rsa_key.p8").read_text(), private_key_passphrase="...",
).save("snowflake-etl")

credentials = SnowflakeCredentials.load("snowflake-etl")
credentials.test_connection()
"""

    account: str = Field(
        description="Account identifier, e.g. 'myorg-myaccount' (organization-account) or 'xy12345.eu-west-1' "
        "(locator and region); not the URL.",
        examples=["myorg-myaccount"],
    )
    user: str | None = Field(default=None, description="Login name of the user. Needed by every authenticator but "
                             "'oauth'.")
    role: str | None = Field(
        default=None, description="Role to use for the session (the user's default role if empty)."
    )
    authenticator: str | None = Field(
        default=None,
        description="How to log in: 'snowflake' (password), 'snowflake_jwt' (key pair), 'oauth' (token), "
        "'externalbrowser' (SSO in a browser) or an Okta URL 'https://<org>.okta.com' (user and password). "
        "Inferred when empty: a private key means 'snowflake_jwt', a token 'oauth', else 'snowflake'.",
    )
    password: SecretStr | None = Field(default=None, description="Password of the user ('snowflake' and Okta; secret).")
    private_key: SecretStr | None = Field(
        default=None,
        description="PEM text of the user's RSA private key for key-pair login ('-----BEGIN PRIVATE KEY-----' or "
        "'-----BEGIN ENCRYPTED PRIVATE KEY-----' ...; secret). Or give private_key_path.",
    )
    private_key_path: Path | None = Field(
        default=None,
        description="Path of a PEM file holding the private key, read when connecting; instead of private_key.",
    )
    private_key_passphrase: SecretStr | None = Field(
        default=None, description="Passphrase of an encrypted private key (secret)."
    )
    token: SecretStr | None = Field(default=None, description="OAuth access token ('oauth'; secret).")
    host: str | None = Field(
        default=None,
        description="Host name to connect to instead of <account>.snowflakecomputing.com (PrivateLink, a proxy, "
        "a local fake).",
    )
    port: int | None = Field(default=None, ge=1, le=65535, description="Port of host (443 if empty).")
    protocol: Literal["https", "http"] | None = Field(
        default=None, description="'https' (the default) or 'http' (only for local fakes and tests)."
    )
    login_timeout: int | None = Field(
        default=None, ge=1, description="Seconds to wait for the login before giving up (the connector's default if "
        "empty)."
    )
    session_parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Session parameters set at login, e.g. {'TIMEZONE': 'UTC', 'STATEMENT_TIMEOUT_IN_SECONDS': 600}.",
    )
    query_tag: str | None = Field(
        default=None, description="Tag on every query of the session (the QUERY_TAG session parameter), to find "
        "plait's queries in the query history."
    )
    connect_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Other keyword arguments for snowflake.connector.connect, e.g. {'client_session_keep_alive': "
        "true, 'network_timeout': 60}. Login fields and secrets have fields of their own and are refused here.",
    )

    # -- validation ----------------------------------------------------------------------------
    @field_validator("account")
    @classmethod
    def _check_account(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("account is empty; give the account identifier, e.g. 'myorg-myaccount'")
        if "://" in value or value.lower().endswith("snowflakecomputing.com") or "/" in value:
            raise ValueError(
                "account is the account identifier, not a URL: for https://myorg-myaccount.snowflakecomputing.com "
                "give 'myorg-myaccount'"
            )
        return value

    @field_validator("authenticator")
    @classmethod
    def _check_authenticator(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if value.lower() in AUTHENTICATORS:
            return value.lower()
        if _OKTA_URL.match(value):
            return value.rstrip("/")
        raise ValueError(
            f"authenticator must be one of {', '.join(repr(a) for a in AUTHENTICATORS)} or an Okta URL "
            "'https://<org>.okta.com'"
        )

    @field_validator("private_key", "password", "token", "private_key_passphrase", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if isinstance(value, (bytes, bytearray)):
            try:
                return bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError("must be text (UTF-8); a private key must be PEM, not DER bytes") from None
        return value

    @field_validator("private_key")
    @classmethod
    def _looks_like_pem(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            text = value.get_secret_value()
            if "-----BEGIN" not in text or "PRIVATE KEY-----" not in text:
                raise ValueError(
                    "private_key must be the PEM text of a private key, starting with '-----BEGIN PRIVATE KEY-----' "
                    "or '-----BEGIN ENCRYPTED PRIVATE KEY-----'"
                )
        return value

    @field_validator("connect_args")
    @classmethod
    def _check_connect_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        taken = sorted(key for key in value if key.lower() in _RESERVED)
        if taken:
            raise ValueError(
                f"connect_args may not set {', '.join(taken)}: use the credentials' own fields (or the connector's "
                "warehouse, database and schema_name)"
            )
        return value

    @model_validator(mode="after")
    def _check_login(self) -> SnowflakeCredentials:
        if self.private_key is not None and self.private_key_path is not None:
            raise ValueError("give private_key or private_key_path, not both")
        if self.private_key_passphrase is not None and not self._has_key():
            raise ValueError("private_key_passphrase is given without private_key or private_key_path")
        if self.query_tag is not None and any(k.upper() == "QUERY_TAG" for k in self.session_parameters):
            raise ValueError("give query_tag or session_parameters['QUERY_TAG'], not both")
        inferred = self.authenticator is None
        authenticator = self._inferred() if inferred else self.authenticator
        missing = [need for need in _needs(authenticator) if not self._has(need)]
        if missing:
            wanted = " and ".join("private_key (or private_key_path)" if m == "private_key" else m for m in missing)
            message = f"authenticator {authenticator!r} needs {wanted}"
            if inferred and authenticator == "snowflake" and "password" in missing:
                message += (
                    " (inferred: no private key or token was given); for key-pair login give private_key or "
                    "private_key_path, for OAuth a token, or set authenticator to 'externalbrowser' or an Okta URL"
                )
            raise ValueError(message)
        if inferred:  # written around validate_assignment: inference must not validate again
            self.__dict__["authenticator"] = authenticator
        return self

    def _has_key(self) -> bool:
        return self.private_key is not None or self.private_key_path is not None

    def _has(self, need: str) -> bool:
        if need == "private_key":
            return self._has_key()
        value = getattr(self, need)
        if isinstance(value, SecretStr):
            return bool(value.get_secret_value())
        return bool(value)

    def _inferred(self) -> str:
        if self._has_key():
            return "snowflake_jwt"
        if self.token is not None:
            return "oauth"
        return "snowflake"

    # -- what connect() gets -------------------------------------------------------------------
    def private_key_der(self) -> bytes | None:
        """The private key as unencrypted PKCS#8 DER bytes (what the Snowflake connector takes),
        decrypted with ``private_key_passphrase``; None when there is no key.

        Raises:
            SnowflakeCredentialsError: The file cannot be read, the key is encrypted and no
                passphrase was given (or the other way round), the passphrase is wrong, or the
                key is not an RSA private key in PEM form.
        """
        if not self._has_key():
            return None
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

        if self.private_key_path is not None:
            source = f"private_key_path {str(self.private_key_path)!r}"
            try:
                pem = self.private_key_path.expanduser().read_bytes()
            except OSError as exc:
                raise SnowflakeCredentialsError(f"cannot read {source}: {exc.strerror or exc}") from None
        else:
            source = "private_key"
            pem = self.private_key.get_secret_value().encode() if self.private_key is not None else b""
        passphrase = (
            self.private_key_passphrase.get_secret_value().encode() if self.private_key_passphrase is not None else None
        )
        try:
            key = serialization.load_pem_private_key(pem, password=passphrase)
        except TypeError as exc:  # encrypted without a passphrase, or a passphrase for a plain key
            if "not encrypted" in str(exc):
                raise SnowflakeCredentialsError(
                    f"{source} is not encrypted but private_key_passphrase is set; leave the passphrase empty"
                ) from None
            raise SnowflakeCredentialsError(
                f"{source} is encrypted: set private_key_passphrase to its passphrase"
            ) from None
        except ValueError as exc:
            if passphrase is not None and ("decrypt" in str(exc).lower() or "password" in str(exc).lower()):
                raise SnowflakeCredentialsError(
                    f"{source} cannot be decrypted: private_key_passphrase is wrong (or the key is damaged)"
                ) from None
            raise SnowflakeCredentialsError(
                f"{source} is not a PEM private key that can be read ({type(exc).__name__}); export it with "
                "'openssl pkcs8 -topk8 -inform PEM -in rsa_key.pem -out rsa_key.p8'"
            ) from None
        except Exception as exc:  # unsupported algorithm and the like
            raise SnowflakeCredentialsError(f"{source} cannot be loaded ({type(exc).__name__})") from None
        if not isinstance(key, RSAPrivateKey):
            raise SnowflakeCredentialsError(
                f"{source} is a {type(key).__name__.lstrip('_')}, but Snowflake key-pair login needs an RSA key"
            )
        return key.private_bytes(
            encoding=serialization.Encoding.DER,
            format=serialization.PrivateFormat.PKCS8,
            encryption_algorithm=serialization.NoEncryption(),
        )

    def connect_kwargs(self, **options: Any) -> dict[str, Any]:
        """Keyword arguments for ``snowflake.connector.connect`` (secrets in clear: never log them).

        Only the secret the authenticator uses is included (a private key as DER bytes,
        already decrypted). ``paramstyle`` is ``"qmark"``: statements bind values with ``?``,
        on the server. ``options`` (``warehouse``, ``database``, ``schema``…) are added; None
        values are left out.

        Raises:
            SnowflakeCredentialsError: The private key cannot be loaded.
        """
        authenticator = self.authenticator or self._inferred()
        kwargs: dict[str, Any] = {
            "account": self.account,
            "user": self.user,
            "role": self.role,
            "authenticator": authenticator.upper() if authenticator in AUTHENTICATORS else authenticator,
            "host": self.host,
            "port": self.port,
            "protocol": self.protocol,
            "login_timeout": self.login_timeout,
            "paramstyle": PARAMSTYLE,
        }
        if authenticator == "snowflake_jwt":
            kwargs["private_key"] = self.private_key_der()
        elif authenticator == "oauth":
            kwargs["token"] = self.token.get_secret_value() if self.token is not None else None
        elif authenticator != "externalbrowser":  # password, and Okta
            kwargs["password"] = self.password.get_secret_value() if self.password is not None else None
        parameters = dict(self.session_parameters)
        if self.query_tag is not None:
            parameters["QUERY_TAG"] = self.query_tag
        if parameters:
            kwargs["session_parameters"] = parameters
        kwargs.update(self.connect_args)
        kwargs.update(options)
        return {key: value for key, value in kwargs.items() if value is not None}

    # -- connecting ----------------------------------------------------------------------------
    def get_connection(self, **options: Any) -> SnowflakeConnection:
        """A new ``snowflake.connector.SnowflakeConnection`` (``options`` as in ``connect_kwargs``).

        Raises:
            SnowflakeCredentialsError: The private key cannot be loaded.
            SnowflakeConnectionError: Snowflake cannot be reached or refused the login (the
                message names account, user, authenticator and the reason, never a secret).
        """
        import snowflake.connector

        kwargs = self.connect_kwargs(**options)
        try:
            return snowflake.connector.connect(**kwargs)
        except Exception as exc:
            raise self.connection_error(exc) from None

    def test_connection(self) -> None:
        """Log in and run ``SELECT 1``; return None, or raise naming account, user and why.

        Raises:
            SnowflakeCredentialsError: The private key cannot be loaded.
            SnowflakeConnectionError: The login or the query failed.
        """
        connection = self.get_connection()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1").fetchone()
        except Exception as exc:
            raise self.connection_error(exc) from None
        finally:
            connection.close()

    def describe(self) -> str:
        """Who logs in where, for messages: ``account 'a' as user 'u' (authenticator 'snowflake')``."""
        who = f"account {self.account!r}" + (f" as user {self.user!r}" if self.user else "")
        details = [f"authenticator {self.authenticator or self._inferred()!r}"]
        if self.role:
            details.append(f"role {self.role!r}")
        if self.host or self.port or self.protocol:
            host = self.host or f"{self.account}.snowflakecomputing.com"
            details.append(f"via {self.protocol or 'https'}://{host}" + (f":{self.port}" if self.port else ""))
        return f"{who} ({', '.join(details)})"

    def secret_values(self) -> list[str]:
        """Every secret of these credentials in clear (to mask them in messages)."""
        return [
            value.get_secret_value()
            for value in (self.password, self.private_key, self.private_key_passphrase, self.token)
            if value is not None
        ]

    def connection_error(self, exc: BaseException) -> SnowflakeConnectionError:
        """The error to raise when logging in (or ``SELECT 1``) failed with ``exc``."""
        if isinstance(exc, SnowflakeConnectionError):
            return exc
        # plait's one masking function: registered secrets, and these (every line of a key too).
        reason = mask_secrets(reason_of(exc), extra=self.secret_values())
        hint = hint_for(reason)
        message = f"cannot connect to Snowflake {self.describe()}: {reason}"
        return SnowflakeConnectionError(f"{message}; {hint}" if hint else message, errno=getattr(exc, "errno", None))
