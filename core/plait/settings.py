"""Settings: one pydantic model, environment prefix ``PLAIT_``.

Values come from (highest first) arguments, environment variables (``PLAIT_<NAME>``, upper
case), ``$PLAIT_HOME/config.toml`` and the defaults below; pydantic converts the strings of
the environment (``"true"``, ``"5.0"``). A plain model, not pydantic-settings, because every
plait process reads these first and that library alone costs tens of milliseconds to
import. ``describe_settings()`` reports each effective value with its source, secrets
masked, for ``plait config show``.
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from plait._masking import mask_url  # re-exported: it always lived here

__all__ = ["PlaitSettings", "get_settings", "describe_settings", "mask_url"]

ENV_PREFIX = "PLAIT_"
# The serializers plait.results provides (settings sit below results; a test keeps them equal).
SERIALIZER_NAMES = ("json", "pickle")


def _default_home() -> Path:
    return Path(os.environ.get("PLAIT_HOME") or Path.home() / ".plait").expanduser()


def _refuse_unknown_keys(path: Path, values: dict[str, Any], known: Any) -> None:
    """A key that names no setting is a typo (or a setting of another version): say which,
    where, and what was probably meant, instead of ignoring it silently."""
    import difflib

    for key in values:
        if key in known:
            continue
        guess = key.lower().removeprefix(ENV_PREFIX.lower())
        if guess in known:
            hint = f" (did you mean {guess!r}? names in config.toml are lower case, without {ENV_PREFIX})"
        else:
            close = difflib.get_close_matches(guess, list(known), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        kind = "table" if isinstance(values[key], dict) else "setting"
        raise ValueError(
            f"{path}: unknown {kind} {key!r}{hint}. Fix or remove it; the settings are a flat table "
            f"of: {', '.join(known)}"
        )


def _config_file() -> tuple[Path, dict[str, Any]]:
    """``$PLAIT_HOME/config.toml`` (a flat table of setting names) and its values."""
    path = _default_home() / "config.toml"
    values: dict[str, Any] = {}
    if path.is_file():
        try:
            values = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path} is not valid TOML: {exc}; fix or remove it") from exc
        _refuse_unknown_keys(path, values, PlaitSettings.model_fields)
    return path, values


class PlaitSettings(BaseModel):
    """Every knob plait reads. Set any of them as ``PLAIT_<NAME>`` in the environment."""

    def __init__(self, **values: Any) -> None:
        environment = {name: os.environ[env] for name, env in _env_names().items() if env in os.environ}
        super().__init__(**{**_config_file()[1], **environment, **values})

    model_config = ConfigDict(extra="ignore", frozen=True)

    home: Path = Field(default_factory=_default_home, description="Directory for plait's own files.")
    database_url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL of the run-history database; default sqlite:///$PLAIT_HOME/plait.db.",
    )
    result_storage: str | None = Field(
        default=None,
        description="Where persisted results go: a path or URL; default $PLAIT_HOME/storage.",
    )
    result_serializer: str = Field(default="pickle", description="Default result serializer: json or pickle.")
    persist_results: bool = Field(default=False, description="Persist every task result by default.")
    encrypt_results: bool = Field(
        default=False,
        description="Encrypt persisted results at rest with the encryption key (results holding secrets always are).",
    )
    record_history: bool = Field(default=True, description="Record runs, states and logs in the database.")
    recorder_flush_interval: float = Field(
        default=1.0, gt=0, description="Seconds between background writes of buffered run records."
    )
    recorder_batch_size: int = Field(
        default=5000, gt=0, description="Buffered records that trigger an early background write."
    )
    task_runner_max_workers: int = Field(
        default=32, ge=1, description="Threads of the default task runner (.submit and .map run concurrently)."
    )
    heartbeat_interval: float = Field(default=5.0, gt=0, description="Seconds between flow-run heartbeats.")
    crash_after: float | None = Field(
        default=None,
        gt=0,
        description="A flow run of another host silent this many seconds is Crashed; default and "
        "minimum: two of its heartbeat intervals (runs of this host are checked by process).",
    )
    logging_level: str = Field(default="INFO", description="Level of run logs shown on the console and stored.")
    log_to_console: bool = Field(default=True, description="Echo run logs to stderr.")
    encryption_key: SecretStr | None = Field(
        default=None,
        description="Fernet key for secrets at rest; default: generated once into $PLAIT_HOME/encryption.key",
    )
    api_url: str | None = Field(
        default=None,
        description="URL of a plait server's API (e.g. http://127.0.0.1:4300/api): record runs and load blocks "
        "there instead of in a local database.",
    )
    api_key: SecretStr | None = Field(default=None, description="API key sent to the plait server (Bearer).")
    api_timeout: float = Field(default=10.0, gt=0, description="Seconds one request to the plait server may take.")
    spool_exit_wait: float = Field(
        default=10.0,
        ge=0,
        description="Seconds a process waits at exit for an unreachable server before leaving its records in "
        "the spool (the next plait process delivers them).",
    )
    server_host: str = Field(default="127.0.0.1", description="Address `plait server start` binds to.")
    server_port: int = Field(default=4300, gt=0, lt=65536, description="Port `plait server start` listens on.")
    server_max_request_bytes: int = Field(
        default=16 * 1024 * 1024, gt=0, description="Largest request body the server accepts (bytes)."
    )

    scheduler_interval: float = Field(
        default=5.0, gt=0, description="Seconds between passes of the scheduler that creates deployments' runs."
    )
    scheduler_horizon: float = Field(
        default=24 * 3600.0, gt=0, description="How far ahead (seconds) the scheduler creates scheduled runs."
    )
    scheduler_max_runs: int = Field(
        default=100, gt=0, description="Most future scheduled runs the scheduler keeps per deployment."
    )
    late_grace: float = Field(
        default=15.0, ge=0, description="Seconds after its scheduled time a run not started becomes Late."
    )

    @field_validator("result_serializer")
    @classmethod
    def _known_serializer(cls, value: str) -> str:
        if value not in SERIALIZER_NAMES:
            raise ValueError(f"unknown serializer {value!r}; use one of {sorted(SERIALIZER_NAMES)}")
        return value

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL; give the server's API, e.g. http://127.0.0.1:4300/api")
        return value

    @field_validator("logging_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.upper()
        if value not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"unknown logging level {value!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value

    # -- derived values -----------------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.home / 'plait.db'}"

    @property
    def effective_result_storage(self) -> str:
        return self.result_storage or str(self.home / "storage")


_ENV_NAMES: tuple[str, ...] = ()


def _env_names() -> dict[str, str]:
    """Each setting's environment variable."""
    return {name: ENV_PREFIX + name.upper() for name in PlaitSettings.model_fields}


def _env_fingerprint() -> tuple[str | None, ...]:
    # Only the variables that name a setting matter; looking up those few is much cheaper
    # than scanning the whole environment on every call.
    return tuple(map(os.environ.get, _ENV_NAMES))


@lru_cache(maxsize=8)
def _load(fingerprint: tuple[str | None, ...], config_mtime: float) -> PlaitSettings:
    return PlaitSettings()


def get_settings() -> PlaitSettings:
    """The effective settings; re-read when PLAIT_* variables or the config file change."""
    global _ENV_NAMES
    if not _ENV_NAMES:
        _ENV_NAMES = tuple(_env_names().values())
    fingerprint = _env_fingerprint()
    home = fingerprint[0] or str(Path.home() / ".plait")  # "home" is the first field
    try:
        mtime = os.stat(os.path.join(os.path.expanduser(home), "config.toml")).st_mtime
    except OSError:
        mtime = 0.0
    return _load(fingerprint, mtime)


def describe_settings(show_secrets: bool = False) -> list[dict[str, Any]]:
    """Effective settings as rows ``{name, value, source, env}``; secrets masked."""
    settings = get_settings()
    config_path, config_values = _config_file()
    rows = []
    for name, info in PlaitSettings.model_fields.items():
        env = ENV_PREFIX + name.upper()
        if env in os.environ:
            source = "env"
        elif name in config_values:
            source = f"file {config_path}"
        else:
            source = "default"
        value = getattr(settings, name)
        if name == "database_url":
            url = settings.effective_database_url
            value = url if show_secrets else mask_url(url)
        elif name == "result_storage":
            value = settings.effective_result_storage
        elif isinstance(value, SecretStr):
            value = value.get_secret_value() if show_secrets else "***"
        elif isinstance(value, Path):
            value = str(value)
        rows.append({"name": name, "value": value, "source": source, "env": env, "description": info.description})
    return rows
