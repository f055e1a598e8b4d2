"""``AzureBlobCredentials``: how plait reaches Azure Blob Storage (or Azurite), and its errors.

A block holds one of four forms, checked when it is built:

1. ``connection_string`` alone;
2. ``account_name`` + ``account_key`` (``account_url`` optional, for Azurite or a sovereign cloud);
3. ``account_url`` (or ``account_name``) + ``sas_token``;
4. ``account_url`` or ``account_name`` alone: Microsoft Entra ID through azure-identity's
   ``DefaultAzureCredential`` (the ``identity`` extra).

A block with no field set reads the same settings from the environment (the Azure CLI's
``AZURE_STORAGE_*`` variables), so ``AzureBlobCredentials()`` behaves like ``az storage``.
Service clients are cached per process and per configuration.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from plait import mask_secrets
from plait.blocks import Block, CredentialsBlock
from plait.exceptions import PlaitError

__all__ = ["AzureBlobCredentials", "AzureError", "clear_client_cache"]

BLOCK = "AzureBlobCredentials"
# The Azure CLI's variables, read when a block sets nothing (field -> variable).
ENV_VARIABLES = {
    "connection_string": "AZURE_STORAGE_CONNECTION_STRING",
    "account_name": "AZURE_STORAGE_ACCOUNT",
    "account_key": "AZURE_STORAGE_KEY",
    "account_url": "AZURE_STORAGE_ACCOUNT_URL",
    "sas_token": "AZURE_STORAGE_SAS_TOKEN",
}
_SECRET_FIELDS = ("connection_string", "account_key", "sas_token")
# Error codes meaning "no such blob" (a missing container is an AzureError that says so).
MISSING_CODES = frozenset({"BlobNotFound"})
_CACHE: OrderedDict[str, Any] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 32


class AzureError(PlaitError):
    """An Azure Storage call failed; the message says what was attempted and why, never a secret.

    Attributes:
        code: Azure's error code (``"AuthenticationFailed"``, ``"ContainerNotFound"``…) when sent.
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


def check_combination(values: dict[str, Any], where: str) -> str:
    """The form the settings in ``values`` make (``connection-string``, ``account-key``,
    ``sas``, ``identity``, or ``none``); ValueError naming ``where`` when they do not fit."""
    given = {name for name, value in values.items() if value is not None}
    if "connection_string" in given:
        others = sorted(given - {"connection_string"})
        if others:
            raise ValueError(f"{where}: connection_string holds the whole connection; leave "
                             f"{', '.join(others)} empty, or drop connection_string")
        return "connection-string"
    if {"account_key", "sas_token"} <= given:
        raise ValueError(f"{where}: give account_key or sas_token, not both")
    if "account_key" in given:
        if "account_name" not in given:
            raise ValueError(f"{where}: account_key needs account_name (the storage account it belongs to); "
                             "set account_name too, or use connection_string")
        return "account-key"
    if "sas_token" in given:
        if not given & {"account_url", "account_name"}:
            raise ValueError(f"{where}: sas_token needs account_url (e.g. 'https://<account>.blob.core.windows.net') "
                             "or account_name; set one of them")
        return "sas"
    return "identity" if given & {"account_url", "account_name"} else "none"


class AzureBlobCredentials(CredentialsBlock):
    """Credentials for Azure Blob Storage: a connection string, an account key, a SAS token,
    or Microsoft Entra ID (``DefaultAzureCredential``, the ``identity`` extra).

    Give one form: ``connection_string`` alone; ``account_name`` with ``account_key``;
    ``account_url`` (or ``account_name``) with ``sas_token``; or ``account_url`` /
    ``account_name`` alone for ``DefaultAzureCredential``. With no field set, the Azure CLI's
    ``AZURE_STORAGE_CONNECTION_STRING``, ``AZURE_STORAGE_ACCOUNT``, ``AZURE_STORAGE_KEY``,
    ``AZURE_STORAGE_SAS_TOKEN`` (and ``AZURE_STORAGE_ACCOUNT_URL``) variables are read.
    """

    # pydantic quotes (part of) the input in a ValidationError: keep secrets out of it
    model_config = ConfigDict(hide_input_in_errors=True)

    block_type_slug: ClassVar[str] = "azure-blob-credentials"
    block_type_name: ClassVar[str] = "Azure Blob Credentials"
    code_example: ClassVar[str] = """\
from plait_azure import AzureBlobCredentials

AzureBlobCredentials(connection_string="DefaultEndpointsProtocol=https;AccountName=...").save("default")
AzureBlobCredentials(account_url="https://analytics.blob.core.windows.net").save("entra")  # DefaultAzureCredential

credentials = AzureBlobCredentials.load("default")
credentials.test_connection()
service = credentials.get_service_client()
print([c.name for c in service.list_containers()])
"""

    connection_string: SecretStr | None = Field(
        None, description="A storage account connection string (from the portal's 'Access keys'); use it alone."
    )
    account_name: str | None = Field(None, description="Storage account name, e.g. 'analytics'.")
    account_key: SecretStr | None = Field(None, description="Access key of the account; goes with account_name.")
    account_url: str | None = Field(
        None,
        description="Blob endpoint, e.g. 'https://analytics.blob.core.windows.net' or Azurite's "
        "'http://127.0.0.1:10000/devstoreaccount1'; default: derived from account_name.",
    )
    sas_token: SecretStr | None = Field(
        None, description="A shared access signature (the query string, with or without '?'); goes with account_url."
    )

    @field_validator("account_name", "account_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return value.strip() or None if isinstance(value, str) else value

    @field_validator("connection_string", "account_key", "sas_token", mode="before")
    @classmethod
    def _empty_secret_is_none(cls, value: Any) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        return (raw.strip() or None) if isinstance(raw, str) else value

    @field_validator("sas_token")
    @classmethod
    def _sas_without_question_mark(cls, value: SecretStr | None) -> SecretStr | None:
        raw = value.get_secret_value() if value is not None else ""
        return SecretStr(raw[1:]) if raw.startswith("?") else value

    @field_validator("account_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
                raise ValueError(f"account_url must be an http(s) URL such as "
                                 f"'https://<account>.blob.core.windows.net', got {value!r}")
            if parts.query:
                raise ValueError("account_url takes no '?' part; put a SAS token in sas_token")
            value = value.rstrip("/")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> AzureBlobCredentials:
        check_combination(self._own_settings(), BLOCK)
        return self

    # -- settings ------------------------------------------------------------------------------
    def _own_settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ENV_VARIABLES}

    def settings(self) -> tuple[str, dict[str, Any]]:
        """(form, plain settings) this block connects with: its own fields, or with none set,
        the ``AZURE_STORAGE_*`` variables. The form is ``connection-string``, ``account-key``,
        ``sas`` or ``identity``.

        Raises:
            AzureError: Nothing is configured, or the variables make an incomplete combination.
        """
        own = {name: _plain(value) for name, value in self._own_settings().items()}
        source = BLOCK
        if all(value is None for value in own.values()):
            own = {name: (os.environ.get(var) or "").strip() or None for name, var in ENV_VARIABLES.items()}
            if own["sas_token"]:
                own["sas_token"] = own["sas_token"].lstrip("?")
            source = f"{BLOCK} (empty, so from the AZURE_STORAGE_* environment variables)"
        try:
            form = check_combination(own, source)
        except ValueError as exc:
            raise AzureError(str(exc)) from None
        if form == "none":
            raise AzureError(
                f"{BLOCK} names no storage account: set connection_string, account_name + account_key, "
                "account_url + sas_token, or account_url alone (DefaultAzureCredential) on the block, or "
                "AZURE_STORAGE_CONNECTION_STRING / AZURE_STORAGE_ACCOUNT (+ AZURE_STORAGE_KEY or "
                "AZURE_STORAGE_SAS_TOKEN) in the environment"
            )
        return form, own

    def endpoint(self) -> str:
        """The blob endpoint these credentials reach (no SAS, no key)."""
        form, values = self.settings()
        if form == "connection-string":
            return _connection_string_endpoint(values["connection_string"])
        return values["account_url"] or f"https://{values['account_name']}.blob.core.windows.net"

    # -- clients -------------------------------------------------------------------------------
    def get_service_client(self) -> Any:
        """An ``azure.storage.blob.BlobServiceClient`` for these credentials, cached per
        process and configuration (clients are thread-safe).

        Raises:
            AzureError: Nothing configured, an incomplete combination, or azure-identity missing
                for the ``DefaultAzureCredential`` form.
        """
        form, values = self.settings()
        key = _fingerprint(form, values)
        with _CACHE_LOCK:
            client = _CACHE.get(key)
            if client is not None:
                _CACHE.move_to_end(key)
                return client
        client = self._build(form, values)
        with _CACHE_LOCK:
            _CACHE[key] = client
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        return client

    def get_container_client(self, container_name: str) -> Any:
        """An ``azure.storage.blob.ContainerClient`` for ``container_name``."""
        return self.get_service_client().get_container_client(container_name)

    def _build(self, form: str, values: dict[str, Any]) -> Any:
        from azure.storage.blob import BlobServiceClient

        from plait_azure import __version__

        options: dict[str, Any] = {"user_agent": f"plait-azure/{__version__}"}
        hide_sas_signatures_in_http_logs()
        with azure_errors(f"creating a blob client with {BLOCK}", self):
            if form == "connection-string":
                return BlobServiceClient.from_connection_string(values["connection_string"], **options)
            url = values["account_url"] or f"https://{values['account_name']}.blob.core.windows.net"
            if form == "account-key":
                credential: Any = {"account_name": values["account_name"], "account_key": values["account_key"]}
            elif form == "sas":
                credential = values["sas_token"]
            else:
                credential = _default_azure_credential()
            return BlobServiceClient(account_url=url, credential=credential, **options)

    def test_connection(self) -> None:
        """Read the account's properties (or, with a SAS limited to containers, list one
        container); return None when that works. One attempt, 10 s connect timeout.

        Raises:
            AzureError: What failed and why, with secret values masked.
        """
        service = self.get_service_client()
        quick = {"retry_total": 0, "connection_timeout": 10}  # storage retries back off 15 s and more
        with azure_errors(f"{BLOCK} connection test at {self.endpoint()}", self):
            try:
                service.get_account_information(**quick)
            except Exception as exc:  # a SAS without service-level rights may still list
                if _code(exc) not in ("AuthorizationResourceTypeMismatch", "AuthorizationPermissionMismatch"):
                    raise
                next(iter(service.list_containers(results_per_page=1, **quick)), None)
        return None


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _fingerprint(form: str, values: dict[str, Any]) -> str:
    raw = json.dumps([form, values, os.getpid()], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def clear_client_cache() -> None:
    """Forget the cached service clients (e.g. after the environment changed)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _connection_string_endpoint(text: str) -> str:
    settings = dict(part.split("=", 1) for part in text.split(";") if "=" in part)
    upper = {k.strip().upper(): v.strip() for k, v in settings.items()}
    if upper.get("USEDEVELOPMENTSTORAGE", "").lower() == "true":
        return "http://127.0.0.1:10000/devstoreaccount1"
    if upper.get("BLOBENDPOINT"):
        return upper["BLOBENDPOINT"].rstrip("/")
    name, suffix = upper.get("ACCOUNTNAME"), upper.get("ENDPOINTSUFFIX", "core.windows.net")
    protocol = upper.get("DEFAULTENDPOINTSPROTOCOL", "https")
    return f"{protocol}://{name}.blob.{suffix}" if name else "(no endpoint in the connection string)"


def _default_azure_credential() -> Any:
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise AzureError(
            f"{BLOCK} with only account_url/account_name uses DefaultAzureCredential, which needs "
            "azure-identity: pip install 'plait-azure[identity]' (or give an account_key, sas_token or "
            "connection_string)"
        ) from None
    return DefaultAzureCredential()


# -- errors -----------------------------------------------------------------------------------------
def _code(exc: BaseException) -> str | None:
    code = getattr(exc, "error_code", None)
    if code is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None) or {}
        code = headers.get("x-ms-error-code") if hasattr(headers, "get") else None
    code = getattr(code, "value", code)  # the SDK's StorageErrorCode enum
    return str(code) if code else None


def explain(exc: BaseException, credentials: Block | None = None) -> str:
    """One line saying why an Azure call failed and what to do; secret values masked."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

    code = _code(exc)
    if isinstance(exc, ServiceRequestError):
        text = f"could not reach the storage endpoint ({exc.message}); check account_url and the network"
    elif isinstance(exc, ClientAuthenticationError) and code is None:
        text = f"authentication failed ({exc.message}); check the credentials"
    elif isinstance(exc, HttpResponseError):
        first = (exc.message or "no message").strip().splitlines()[0]
        text = f"Azure returned {exc.status_code} {code or ''}".rstrip() + f": {first}"
        if code in ("AuthenticationFailed", "AuthorizationFailure"):
            text += "; check account_key / sas_token (and that the SAS has not expired)"
        elif code == "ContainerNotFound":
            text += "; create the container first (AzureBlobStorageContainer.create_container())"
    elif isinstance(exc, ValueError):
        text = f"invalid settings: {exc}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    # A block built in code and never saved has not registered its secrets yet.
    return mask_secrets(text, extra=secret_parts(credentials))


def secret_parts(block: Any) -> list[Any]:
    """What to mask for ``block``: the block itself (its secret fields), the secret parts that
    may be quoted alone (a connection string's AccountKey, a SAS signature, as sent and
    decoded), and for an empty block the ``AZURE_STORAGE_*`` secrets it connects with."""
    if block is None:
        return []
    found: list[Any] = [block]
    credentials = getattr(block, "credentials", block)
    texts = [_plain(getattr(credentials, name, None)) for name in _SECRET_FIELDS]
    if isinstance(credentials, AzureBlobCredentials) and not any(credentials._own_settings().values()):
        texts += [os.environ.get(ENV_VARIABLES[name]) for name in _SECRET_FIELDS]  # what an empty block uses
    for text in filter(None, texts):
        found.append(str(text))
        for part in re.split(r"[;&]", str(text)):
            key, _, value = part.partition("=")
            if key.strip().lower() in ("accountkey", "sig") and value.strip():
                found += [value.strip(), unquote(value.strip())]
    return found


_SIGNATURE = re.compile(r"(?i)\b(sig=)[^&\s'\"]+")


class _HideSasSignatures(logging.Filter):
    """urllib3 logs each request's URL at DEBUG, a SAS signature included: mask the signature."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "sig=" in str(record.msg) or any(isinstance(a, str) and "sig=" in a for a in record.args or ()):
            record.msg, record.args = _SIGNATURE.sub(r"\1***", record.getMessage()), None
        return True


_LOG_FILTER = _HideSasSignatures()


def hide_sas_signatures_in_http_logs() -> None:
    """Put the filter on urllib3's request logger (once; called when a client is built)."""
    logger = logging.getLogger("urllib3.connectionpool")
    if _LOG_FILTER not in logger.filters:
        logger.addFilter(_LOG_FILTER)


@contextmanager
def azure_errors(action: str, credentials: Block | None, *, missing: str | None = None) -> Iterator[None]:
    """Turn azure-core errors raised inside into ``AzureError("<action> failed: ...")``; with
    ``missing``, "no such blob/container" becomes ``FileNotFoundError(missing)``."""
    from azure.core.exceptions import AzureError as SdkError

    try:
        yield
    except (SdkError, ValueError) as exc:
        if isinstance(exc, ValueError) and not _sdk_value_error(exc):
            raise
        code = _code(exc)
        if missing is not None and code in MISSING_CODES:
            raise FileNotFoundError(missing) from None
        # the SDK's exception may quote a secret, so it is not chained
        raise AzureError(f"{action} failed: {explain(exc, credentials)}", code=code) from None


def _sdk_value_error(exc: ValueError) -> bool:
    """A ValueError raised by the azure SDK (a malformed connection string or key)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "azure" in tb.tb_frame.f_code.co_filename.replace("\\", "/").split("/")
