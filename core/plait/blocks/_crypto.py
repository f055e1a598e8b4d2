"""Encryption of block secrets at rest (Fernet: AES-128-CBC with an HMAC, from ``cryptography``).

The key itself lives in ``plait._keys`` (shared with result files): ``PLAIT_ENCRYPTION_KEY``
(setting ``encryption_key``) or ``$PLAIT_HOME/encryption.key``, which the first process to
need it creates (mode 0600, never replaced afterwards). Losing the key makes saved secrets
unreadable; a different key is detected (Fernet tokens are authenticated) and refused
without changing anything.
"""

from __future__ import annotations

import base64
import json
from typing import Any

# The key file helpers stay importable from here for code written before plait._keys.
from plait._keys import KEY_FILE_NAME, DecryptError, encryption_key, key_file_path
from plait._keys import _create_key_file as _create_key_file  # noqa: F401 - re-export
from plait._keys import _read_key_file as _read_key_file  # noqa: F401 - re-export
from plait._keys import fernet as _fernet  # noqa: F401 - re-export

__all__ = ["KEY_FILE_NAME", "DecryptError", "encryption_key", "encrypt_value", "decrypt_value", "key_file_path"]


# -- values --------------------------------------------------------------------------------------
def _to_plain(value: Any) -> Any:
    """JSON-safe form of a revealed secret value; bytes become ``{"$b64": ...}``."""
    if isinstance(value, bytes):
        return {"$b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _from_plain(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$b64"}:
            return base64.b64decode(value["$b64"])
        return {k: _from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_plain(v) for v in value]
    return value


def encrypt_value(value: Any) -> str:
    """Encrypt a revealed (plain) value: str, bytes, dict, list... as a Fernet token."""
    from pydantic_core import to_jsonable_python

    payload = json.dumps(to_jsonable_python(_to_plain(value)), separators=(",", ":"))
    from plait._keys import encrypt

    return encrypt(payload.encode("utf-8")).decode("ascii")


def decrypt_value(token: str) -> Any:
    """The plain value of a token from ``encrypt_value``.

    Raises:
        DecryptError: The token was made with another key (or is damaged).
    """
    from plait._keys import decrypt

    try:
        payload = decrypt(token.encode("ascii"))
    except UnicodeEncodeError:  # not a token at all
        raise DecryptError() from None
    return _from_plain(json.loads(payload))
