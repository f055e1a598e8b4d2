"""``GcpCredentials``: how plait reaches Google Cloud (or a local emulator), and its errors.

A service account key (the JSON file Google hands out) is stored as a secret, given either
as the file's text or as a dict. Without one, Google's Application Default Credentials are
used (``google.auth.default()``: ``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth
application-default login``, the metadata server of a GCE/GKE/Cloud Run workload), so
``GcpCredentials()`` behaves like a plain ``storage.Client()``.

Clients are cached per process and per configuration (the block's values plus the Google
environment variables), so building a ``GcsBucket`` for every task run costs nothing after
the first.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from plait import mask_secrets
from plait.blocks import Block, CredentialsBlock
from plait.exceptions import PlaitError

__all__ = ["GcpCredentials", "GcpError", "clear_client_cache", "gcp_errors", "explain"]

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# What google.oauth2.service_account needs from a key file to sign and to get tokens.
REQUIRED_KEY_FIELDS = ("client_email", "private_key", "token_uri")
# Environment variables that change what the default chain or the storage client finds.
_ENV_PREFIXES = ("GOOGLE_", "GCLOUD_", "CLOUDSDK_", "GCE_", "STORAGE_EMULATOR_HOST", "API_ENDPOINT_OVERRIDE",
                 "NO_GCE_CHECK")


class GcpError(PlaitError):
    """A Google Cloud call failed; the message says what was attempted and why, never a secret.

    Attributes:
        code: The HTTP status Google answered with (403, 404, 412…), when there was one.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def parse_service_account_info(text: str, source: str = "service_account_info") -> dict[str, Any]:
    """The key file's JSON as a dict, checked; ValueError saying what is wrong (never its content).

    Args:
        text: The JSON text of a service account key file.
        source: What the text is, for the message ("service_account_info", a file path).
    """
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        # The position only: the decoder's message never quotes the document.
        raise ValueError(
            f"GcpCredentials: {source} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "give the whole content of the service account's key file (or the same as a dict)"
        ) from None
    if not isinstance(info, dict):
        raise ValueError(f"GcpCredentials: {source} must be a JSON object (a key file), not a {type(info).__name__}")
    kind = info.get("type")
    if kind != "service_account":
        other = f" it is {kind!r};" if isinstance(kind, str) else ""
        raise ValueError(
            f"GcpCredentials: {source} is not a service account key (its \"type\" must be \"service_account\";"
            f"{other} for user credentials leave it empty and use `gcloud auth application-default login`)"
        )
    missing = [name for name in REQUIRED_KEY_FIELDS if not isinstance(info.get(name), str) or not info[name].strip()]
    if missing:
        raise ValueError(
            f"GcpCredentials: {source} lacks {', '.join(missing)}; download a new JSON key for the service "
            "account (IAM > Service accounts > Keys) and give its whole content"
        )
    key = info["private_key"]
    if "-----BEGIN" not in key or "PRIVATE KEY-----" not in key:
        raise ValueError(f"GcpCredentials: {source}'s private_key is not a PEM private key "
                         "('-----BEGIN PRIVATE KEY-----...'); give the key file as Google wrote it")
    return info


class GcpCredentials(CredentialsBlock):
    """Credentials for Google Cloud: a service account key, or Application Default Credentials.

    With ``service_account_info`` (the key file's JSON, kept secret) or
    ``service_account_file`` the calls are made as that service account. With neither,
    ``google.auth.default()`` finds the credentials (``GOOGLE_APPLICATION_CREDENTIALS``,
    gcloud's application-default login, the metadata server). ``api_endpoint`` points the
    clients at another endpoint, such as a local Cloud Storage emulator, usually with
    ``anonymous=True``.
    """

    # pydantic's errors would otherwise quote the rejected input: the key itself.
    model_config = ConfigDict(hide_input_in_errors=True)

    block_type_slug: ClassVar[str] = "gcp-credentials"
    block_type_name: ClassVar[str] = "GCP Credentials"
    code_example: ClassVar[str] = """\
from pathlib import Path

from plait_gcp import GcpCredentials

GcpCredentials(
    service_account_info=Path("plait-runner-key.json").read_text(),
    project="analytics-prod",
).save("default")

credentials = GcpCredentials.load("default")
credentials.test_connection()
client = credentials.get_storage_client()
print([bucket.name for bucket in client.list_buckets()])
"""

    service_account_info: SecretStr | None = Field(
        None,
        description="The service account key file's JSON (text or dict), kept secret; empty: "
        "service_account_file or Application Default Credentials.",
    )
    service_account_file: str | None = Field(
        None, description="Path of a service account key file, read when connecting (instead of service_account_info)."
    )
    project: str | None = Field(
        None,
        description="Project id, e.g. 'analytics-prod'; empty: the key's project_id or the default chain's "
        "(GOOGLE_CLOUD_PROJECT, gcloud's).",
    )
    api_endpoint: str | None = Field(
        None,
        description="Endpoint for the clients instead of Google's, e.g. a local emulator "
        "'http://127.0.0.1:9023'; empty: STORAGE_EMULATOR_HOST if set, else Google's.",
    )
    anonymous: bool = Field(
        False, description="Send no credentials (for emulators and public buckets); no key may be given then."
    )

    @field_validator("service_account_info", mode="before")
    @classmethod
    def _info_as_json(cls, value: Any) -> Any:
        if isinstance(value, dict):
            value = json.dumps(value)
        elif isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, (str, bytes)):
            text = value.decode() if isinstance(value, bytes) else value
            if not text.strip():
                return None
            parse_service_account_info(text)
            return text
        return value

    @field_validator("service_account_file", "project", "api_endpoint")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if isinstance(value, str) else value

    @field_validator("api_endpoint")
    @classmethod
    def _endpoint_is_url(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("http://", "https://")):
            raise ValueError(f"api_endpoint must start with http:// or https://, got {value!r}")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _one_source(self) -> GcpCredentials:
        if self.service_account_info is not None and self.service_account_file is not None:
            raise ValueError("give service_account_info or service_account_file, not both")
        if self.anonymous and (self.service_account_info is not None or self.service_account_file is not None):
            raise ValueError("anonymous=True sends no credentials: leave service_account_info/_file empty")
        return self

    # -- what the key says -----------------------------------------------------------------
    def service_account_key(self) -> dict[str, Any] | None:
        """The service account key as a dict (read from the file if one is named), or None.

        Raises:
            GcpError: The file cannot be read, or is no valid key file.
        """
        if self.service_account_info is not None:
            return parse_service_account_info(self.service_account_info.get_secret_value())
        if self.service_account_file is None:
            return None
        path = Path(self.service_account_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise GcpError(f"GcpCredentials: cannot read service_account_file {str(path)!r}: "
                           f"{exc.strerror or exc}; fix the path or give service_account_info") from None
        try:
            return parse_service_account_info(text, source=f"service_account_file {str(path)!r}")
        except ValueError as exc:
            raise GcpError(str(exc)) from None

    @property
    def client_email(self) -> str | None:
        """The service account's e-mail (from the key), or None without a key."""
        key = self.service_account_key()
        return str(key["client_email"]) if key else None

    @property
    def endpoint(self) -> str | None:
        """The endpoint clients use: ``api_endpoint``, else ``STORAGE_EMULATOR_HOST``, else None (Google's)."""
        return self.api_endpoint or os.environ.get("STORAGE_EMULATOR_HOST") or None

    # -- credentials and clients -------------------------------------------------------------
    def get_credentials(self) -> tuple[Any, str | None]:
        """``(google.auth credentials, project id)`` for these settings.

        The credentials are ``AnonymousCredentials`` with ``anonymous`` (or with no key while
        ``STORAGE_EMULATOR_HOST`` is set, as google-cloud-storage does), the service account's
        with a key, else what ``google.auth.default()`` finds.

        Raises:
            GcpError: The key does not load, or the default chain finds no credentials.
        """
        from google.auth.credentials import AnonymousCredentials

        key = self.service_account_key()
        if key is not None:
            from google.oauth2 import service_account

            try:
                found = service_account.Credentials.from_service_account_info(key, scopes=SCOPES)
            except (ValueError, TypeError) as exc:
                raise GcpError(f"GcpCredentials: the service account key of {key.get('client_email')!r} does not "
                               f"load ({explain(exc, self)}); download a new key") from None
            return found, self.project or key.get("project_id")
        if self.anonymous or (os.environ.get("STORAGE_EMULATOR_HOST") and not self.api_endpoint):
            return AnonymousCredentials(), self.project or _environment_project()
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            found, project = google.auth.default(scopes=SCOPES)
        except DefaultCredentialsError as exc:
            raise GcpError(f"GcpCredentials: {explain(exc, self)}") from None
        return found, self.project or project

    def get_storage_client(self) -> Any:
        """A ``google.cloud.storage.Client`` for these credentials, cached per process.

        Raises:
            GcpError: As ``get_credentials``.
        """
        key = self._fingerprint("storage")
        with _CACHE_LOCK:
            client = _CACHE.get(key)
            if client is not None:
                _CACHE.move_to_end(key)
                return client
        client = self._storage_client()
        with _CACHE_LOCK:
            _CACHE[key] = client
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        return client

    def _storage_client(self) -> Any:
        from google.api_core.client_info import ClientInfo
        from google.cloud import storage

        from plait_gcp import __version__

        credentials, project = self.get_credentials()
        options = {"api_endpoint": self.api_endpoint} if self.api_endpoint else None
        with gcp_errors("creating a Cloud Storage client", self):
            return storage.Client(
                project=project,
                credentials=credentials,
                client_options=options,
                client_info=ClientInfo(user_agent=f"plait-gcp/{__version__}"),
            )

    def test_connection(self) -> None:
        """List at most one bucket of the project; return None when that works.

        One attempt with a 10 s timeout (no retries), so a wrong endpoint fails fast.

        Raises:
            GcpError: What failed and why, with secret values masked.
        """
        client = self.get_storage_client()
        where = f" at {self.endpoint}" if self.endpoint else ""
        if not client.project:
            raise GcpError("GCP connection test failed: no project; set project on the GcpCredentials block, "
                           "project_id in the key, or GOOGLE_CLOUD_PROJECT")
        with gcp_errors(f"GCP connection test{where} (listing buckets of project {client.project!r})", self):
            list(client.list_buckets(max_results=1, timeout=10, retry=None))

    # -- internals -------------------------------------------------------------------------
    def _fingerprint(self, service: str) -> str:
        values = {name: _plain(getattr(self, name)) for name in type(self).model_fields}
        env = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}
        raw = json.dumps([service, values, env, os.getpid()], sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()


def _environment_project() -> str | None:
    return os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCLOUD_PROJECT") or None


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


# -- the per-process cache of clients ------------------------------------------------------------
_CACHE_SIZE = 32
_CACHE_LOCK = threading.Lock()
_CACHE: OrderedDict[str, Any] = OrderedDict()


def clear_client_cache() -> None:
    """Forget every cached client (the next call makes new ones)."""
    with _CACHE_LOCK:
        _CACHE.clear()


# -- turning Google errors into clear messages ----------------------------------------------------
def error_code(exc: BaseException) -> int | None:
    """The HTTP status of a Google API error (404, 403…), else None."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def explain(exc: BaseException, credentials: Block | None = None) -> str:
    """One line saying why a Google call failed and what to do; secret values masked."""
    from google.api_core.exceptions import GoogleAPICallError, RetryError
    from google.auth.exceptions import DefaultCredentialsError, RefreshError, TransportError
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import Timeout

    if isinstance(exc, DefaultCredentialsError):
        text = ("no Google credentials found; set service_account_info or service_account_file on the "
                "GcpCredentials block, or configure Application Default Credentials "
                "(GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth application-default login`, a workload identity)")
    elif isinstance(exc, RefreshError):
        text = f"could not get an access token ({exc}); check that the service account and its key still exist"
    elif isinstance(exc, (RequestsConnectionError, TransportError)):
        endpoint = getattr(credentials, "endpoint", None) or "storage.googleapis.com"
        text = f"could not connect to {endpoint}; check api_endpoint and that the service is reachable"
    elif isinstance(exc, Timeout):
        text = f"timed out ({type(exc).__name__}); check the network, or raise the bucket's timeout"
    elif isinstance(exc, RetryError):
        cause = exc.cause
        text = f"gave up retrying: {explain(cause, credentials) if cause is not None else exc.message}"
    elif isinstance(exc, GoogleAPICallError):
        text = f"Google answered {exc.code}: {_first_line(exc.message) or 'no message'}"
    else:
        text = f"{type(exc).__name__}: {_first_line(str(exc))}"
    return mask_secrets(text, extra=_secrets_of(credentials))


def _secrets_of(credentials: Block | None) -> list[Any]:
    """The block (its secrets may not be registered yet: built in code, never saved) and the
    parts of its key that a message could quote alone."""
    if credentials is None:
        return []
    extra: list[Any] = [credentials]
    info = getattr(credentials, "service_account_info", None)
    if isinstance(info, SecretStr):
        try:
            key = json.loads(info.get_secret_value())
        except ValueError:
            return extra
        extra += [key.get(name) for name in ("private_key", "private_key_id") if isinstance(key.get(name), str)]
        pem = key.get("private_key")
        if isinstance(pem, str):  # each line of the key's body, as a message may wrap it
            extra += [line for line in pem.splitlines() if len(line) >= 16 and not line.startswith("-----")]
    return extra


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


@contextmanager
def gcp_errors(action: str, credentials: Block | None, *, missing: str | None = None) -> Iterator[None]:
    """Turn Google client errors raised inside into ``GcpError("<action> failed: ...")``.

    With ``missing``, a 404 becomes ``FileNotFoundError(missing)`` instead.
    """
    from google.api_core.exceptions import GoogleAPIError, NotFound
    from google.auth.exceptions import GoogleAuthError
    from google.resumable_media import DataCorruption, InvalidResponse
    from requests.exceptions import RequestException

    try:
        yield
    except NotFound as exc:
        if missing is not None:
            raise FileNotFoundError(missing) from None
        raise GcpError(f"{action} failed: {explain(exc, credentials)}", code=404) from exc
    except (GoogleAPIError, GoogleAuthError, RequestException, InvalidResponse, DataCorruption) as exc:
        code = error_code(exc)
        if missing is not None and code == 404:
            raise FileNotFoundError(missing) from None
        raise GcpError(f"{action} failed: {explain(exc, credentials)}", code=code) from exc
