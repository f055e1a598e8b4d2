"""The errors plait-snowflake raises, and the words that explain them.

Every message names what was attempted (the account, the user, the authenticator, the
endpoint) and why it failed, with a hint of what to check; none contains a password, token,
passphrase or key (the credentials mask them with ``plait.mask_secrets``).
"""

from __future__ import annotations

import re

from plait.exceptions import PlaitError

__all__ = [
    "SnowflakeConnectionError",
    "SnowflakeCredentialsError",
    "PandasNotInstalledError",
]


class SnowflakeCredentialsError(PlaitError, ValueError):
    """The credentials cannot be used as given: a private key that does not load, a wrong
    passphrase, an unreadable key file. Raised before anything is sent to Snowflake."""


class SnowflakeConnectionError(PlaitError):
    """Snowflake could not be reached or refused the login.

    The message names the account, user, authenticator and endpoint, Snowflake's reason and
    what to check next; never a secret.

    Attributes:
        errno: Snowflake's error number (``250001``, ``390100``…) when there was one.
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class PandasNotInstalledError(PlaitError, ImportError):
    """pandas is needed (``snowflake_load_dataframe``) but not installed."""


PANDAS_HINT = "pip install 'plait-snowflake[pandas]'"

# What a failure's text says -> what to check next (first match wins, lowercase words).
_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("incorrect username or password",), "check user and password"),
    (("jwt token is invalid",),
     "check that the public key of this key pair is set on the user (ALTER USER ... SET RSA_PUBLIC_KEY = '...') "
     "and that account and user are right"),
    (("oauth", "expired"), "get a fresh OAuth access token"),
    (("oauth", "invalid"), "check token: it is not a valid OAuth access token for this account"),
    (("user", "locked"), "the user is locked: ask an administrator to unlock it"),
    (("user", "disabled"), "the user is disabled: ask an administrator to enable it"),
    (("role", "not", "granted"), "check role: it is not granted to the user"),
    (("does not exist",), "check the names of warehouse, database, schema and role, and that the role may use them"),
    (("could not connect to snowflake backend",),
     "check account (the account identifier, e.g. 'myorg-myaccount'), host and port, and that this machine can "
     "reach Snowflake"),
    (("failed to get the response",), "check that this machine can reach Snowflake, or raise login_timeout"),
    (("timed out",), "check that this machine can reach Snowflake, or raise login_timeout"),
    (("timeout",), "check that this machine can reach Snowflake, or raise login_timeout"),
)


def hint_for(reason: str) -> str:
    """What to check next for a failure whose text is ``reason`` ('' when nothing fits)."""
    lowered = reason.lower()
    for words, hint in _HINTS:
        if all(word in lowered for word in words):
            return hint
    return ""


def reason_of(exc: BaseException) -> str:
    """The failure's own words on one line (Snowflake's ``errno: message``)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    text = re.sub(r"\s+", " ", text).strip()
    return text or type(exc).__name__
