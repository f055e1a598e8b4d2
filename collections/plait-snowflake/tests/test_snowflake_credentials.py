"""SnowflakeCredentials: each authenticator and what it needs, key pairs, secrets kept secret,
test_connection against fakesnow's server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from plait.blocks import block_to_dict
from plait_snowflake import SnowflakeConnectionError, SnowflakeCredentials, SnowflakeCredentialsError

TOKEN = "oauth-token-Zz9-very-secret"


def creds(**values: Any) -> SnowflakeCredentials:
    return SnowflakeCredentials(**{"account": "myorg-myaccount", **values})


def validation_message(**values: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        creds(**values)
    return str(caught.value)


# -- each authenticator and what it needs ---------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"authenticator": "snowflake", "user": "u"}, "authenticator 'snowflake' needs password"),
        ({"authenticator": "snowflake", "password": "pw-123"}, "authenticator 'snowflake' needs user"),
        ({"authenticator": "snowflake_jwt", "user": "u"},
         "authenticator 'snowflake_jwt' needs private_key (or private_key_path)"),
        ({"authenticator": "snowflake_jwt"}, "authenticator 'snowflake_jwt' needs user and private_key"),
        ({"authenticator": "oauth", "user": "u"}, "authenticator 'oauth' needs token"),
        ({"authenticator": "oauth", "user": "u", "password": "pw-123"}, "authenticator 'oauth' needs token"),
        ({"authenticator": "externalbrowser"}, "authenticator 'externalbrowser' needs user"),
        ({"authenticator": "https://acme.okta.com", "user": "u"},
         "authenticator 'https://acme.okta.com' needs password"),
        ({"user": "u"}, "authenticator 'snowflake' needs password (inferred"),
    ],
    ids=["password-no-password", "password-no-user", "jwt-no-key", "jwt-nothing", "oauth-no-token",
         "oauth-password-instead", "browser-no-user", "okta-no-password", "inferred-nothing"],
)
def test_each_authenticator_names_what_is_missing(values: dict[str, Any], expected: str) -> None:
    assert expected in validation_message(**values)


def test_each_authenticator_with_what_it_needs(plain_pem: str) -> None:
    assert creds(user="u", password="pw-123").authenticator == "snowflake"
    assert creds(user="u", private_key=plain_pem).authenticator == "snowflake_jwt"
    assert creds(token=TOKEN).authenticator == "oauth"  # OAuth needs no user
    assert creds(user="u", authenticator="EXTERNALBROWSER").authenticator == "externalbrowser"
    okta = creds(user="u", password="pw-123", authenticator="https://acme.okta.com/")
    assert okta.authenticator == "https://acme.okta.com"
    assert okta.connect_kwargs()["authenticator"] == "https://acme.okta.com"
    assert okta.connect_kwargs()["password"] == "pw-123"


def test_authenticator_is_inferred_key_first_then_token(plain_pem: str) -> None:
    assert creds(user="u", private_key=plain_pem, password="pw-123", token=TOKEN).authenticator == "snowflake_jwt"
    assert creds(user="u", token=TOKEN, password="pw-123").authenticator == "oauth"
    assert creds(user="u", password="pw-123").authenticator == "snowflake"


def test_unknown_authenticator_lists_the_known_ones() -> None:
    message = validation_message(user="u", password="pw-123", authenticator="kerberos")
    assert "'snowflake', 'snowflake_jwt', 'oauth', 'externalbrowser' or an Okta URL" in message
    assert "Okta URL" in validation_message(user="u", password="pw", authenticator="http://acme.okta.com")


def test_other_rules(plain_pem: str, tmp_path: Path) -> None:
    assert "not a URL" in validation_message(account="https://myorg-myaccount.snowflakecomputing.com", user="u",
                                              password="pw-123")
    assert "not both" in validation_message(user="u", private_key=plain_pem, private_key_path=tmp_path / "k.p8")
    assert "private_key_passphrase is given without private_key" in validation_message(
        user="u", password="pw-123", private_key_passphrase="pp-123")
    assert "query_tag or session_parameters['QUERY_TAG']" in validation_message(
        user="u", password="pw-123", query_tag="a", session_parameters={"query_tag": "b"})
    assert "connect_args may not set password" in validation_message(
        user="u", password="pw-123", connect_args={"password": "x"})
    assert "PEM text" in validation_message(user="u", private_key="not a key")


# -- key pair ---------------------------------------------------------------------------------------
def loaded_key(der: bytes) -> Any:
    return serialization.load_der_private_key(der, password=None)


def test_encrypted_key_pair_without_password_builds_connect_kwargs(
    encrypted_pem: str, passphrase: str, rsa_key: Any
) -> None:
    credentials = creds(user="ETL", private_key=encrypted_pem, private_key_passphrase=passphrase)
    assert credentials.password is None
    kwargs = credentials.connect_kwargs(warehouse="WH", database=None)
    assert kwargs["authenticator"] == "SNOWFLAKE_JWT"
    assert kwargs["paramstyle"] == "qmark"
    assert kwargs["warehouse"] == "WH" and "database" not in kwargs
    assert "password" not in kwargs and "private_key_passphrase" not in kwargs
    key = loaded_key(kwargs["private_key"])  # unencrypted DER, the same key
    assert key.private_numbers() == rsa_key.private_numbers()


def test_key_from_a_file_and_as_bytes(key_file: Path, passphrase: str, encrypted_pem: str, rsa_key: Any) -> None:
    from_file = creds(user="ETL", private_key_path=key_file, private_key_passphrase=passphrase)
    assert loaded_key(from_file.private_key_der()).private_numbers() == rsa_key.private_numbers()
    from_bytes = creds(user="ETL", private_key=encrypted_pem.encode(), private_key_passphrase=passphrase)
    assert from_bytes.private_key_der() == from_file.private_key_der()


def test_key_problems_are_explained_without_secrets(
    encrypted_pem: str, plain_pem: str, passphrase: str, tmp_path: Path
) -> None:
    cases = [
        (creds(user="u", private_key=encrypted_pem), "is encrypted: set private_key_passphrase"),
        (creds(user="u", private_key=encrypted_pem, private_key_passphrase="wrong-pass"),
         "private_key_passphrase is wrong"),
        (creds(user="u", private_key=plain_pem, private_key_passphrase=passphrase), "is not encrypted"),
        (creds(user="u", private_key_path=tmp_path / "missing.p8"), "cannot read private_key_path"),
        (creds(user="u", private_key="-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
         "is not a PEM private key"),
    ]
    for credentials, expected in cases:
        with pytest.raises(SnowflakeCredentialsError) as caught:
            credentials.connect_kwargs()
        assert expected in str(caught.value)
        assert passphrase not in str(caught.value) and "wrong-pass" not in str(caught.value)
        assert "MII" not in str(caught.value)  # no key material


def test_a_non_rsa_key_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    with pytest.raises(SnowflakeCredentialsError, match="needs an RSA key"):
        creds(user="u", private_key=pem).private_key_der()


# -- what connect() gets -------------------------------------------------------------------------
def test_connect_kwargs_carry_the_options_and_only_the_secret_in_use(plain_pem: str) -> None:
    credentials = creds(
        user="u", password="pw-123", role="ANALYST", host="proxy.internal", port=8443, protocol="https",
        login_timeout=30, session_parameters={"TIMEZONE": "UTC"}, query_tag="plait-etl",
        connect_args={"client_session_keep_alive": True},
    )
    assert credentials.connect_kwargs(schema="PUBLIC") == {
        "account": "myorg-myaccount", "user": "u", "role": "ANALYST", "authenticator": "SNOWFLAKE",
        "host": "proxy.internal", "port": 8443, "protocol": "https", "login_timeout": 30, "paramstyle": "qmark",
        "password": "pw-123", "session_parameters": {"TIMEZONE": "UTC", "QUERY_TAG": "plait-etl"},
        "client_session_keep_alive": True, "schema": "PUBLIC",
    }
    oauth = creds(token=TOKEN, password="unused-pw").connect_kwargs()
    assert oauth["token"] == TOKEN and oauth["authenticator"] == "OAUTH" and "password" not in oauth
    browser = creds(user="u", authenticator="externalbrowser", password="unused-pw").connect_kwargs()
    assert browser["authenticator"] == "EXTERNALBROWSER" and "password" not in browser


# -- secrets stay secret ---------------------------------------------------------------------------
def test_secrets_are_masked_in_repr_json_and_documents(encrypted_pem: str, passphrase: str) -> None:
    credentials = creds(user="u", password="pw-Very-Secret", private_key=encrypted_pem,
                        private_key_passphrase=passphrase, token=TOKEN)
    outputs = [repr(credentials), str(credentials), credentials.model_dump_json(),
               json.dumps(block_to_dict(credentials), default=str), credentials.describe()]
    for text in outputs:
        for secret in ("pw-Very-Secret", passphrase, TOKEN, "ENCRYPTED PRIVATE KEY"):
            assert secret not in text
    assert sorted(SnowflakeCredentials.secret_fields()) == ["password", "private_key", "private_key_passphrase",
                                                            "token"]


def test_validation_errors_never_echo_a_secret() -> None:
    message = validation_message(user="u", password="pw-Very-Secret", private_key="garbage-key-Secret")
    assert "garbage-key-Secret" not in message and "pw-Very-Secret" not in message


def test_connection_error_messages_are_scrubbed() -> None:
    credentials = creds(user="u", password="pw-Very-Secret")
    error = credentials.connection_error(RuntimeError("250001: login as u with pw-Very-Secret failed"))
    assert isinstance(error, SnowflakeConnectionError)
    assert "pw-Very-Secret" not in str(error)
    assert "account 'myorg-myaccount' as user 'u'" in str(error)


def test_connection_errors_mask_every_form_of_every_secret(encrypted_pem: str, passphrase: str) -> None:
    """The driver may quote a secret escaped (repr, JSON) or a key's lines joined on one line:
    plait's one masking function hides each form, and every line of the key."""
    password = 'pw"Very\\Secret'  # a quote and a backslash: escaped differently by repr and JSON
    credentials = creds(user="u", password=password, private_key=encrypted_pem, private_key_passphrase=passphrase)
    body = [line for line in encrypted_pem.splitlines() if line and "-----" not in line]
    raw = RuntimeError(
        f"390100: login as u with {password!r} failed; key {' '.join(body)}; passphrase {json.dumps(passphrase)}"
    )
    message = str(credentials.connection_error(raw))
    assert message.startswith("cannot connect to Snowflake account 'myorg-myaccount' as user 'u'")
    assert "login as u with '***' failed; key " in message
    assert "Very" not in message and passphrase not in message
    assert not [line for line in body if line in message], "a line of the private key leaked"


# -- against the fakesnow server ----------------------------------------------------------------------
def test_test_connection_ok_with_password(credentials: SnowflakeCredentials) -> None:
    assert credentials.test_connection() is None


def test_test_connection_ok_with_an_encrypted_key_pair_and_no_password(
    make_credentials: Callable[..., SnowflakeCredentials], encrypted_pem: str, passphrase: str
) -> None:
    # The real connector signs a JWT with the key; fakesnow accepts the login without checking
    # the signature, so this proves the key loads and the key-pair login is sent.
    credentials = make_credentials(password=None, private_key=encrypted_pem, private_key_passphrase=passphrase)
    assert credentials.authenticator == "snowflake_jwt"
    assert credentials.test_connection() is None


def test_test_connection_ok_with_oauth(make_credentials: Callable[..., SnowflakeCredentials]) -> None:
    credentials = make_credentials(password=None, user=None, token=TOKEN)
    assert credentials.test_connection() is None


def test_test_connection_on_a_closed_port_fails_clearly_and_masked(
    make_credentials: Callable[..., SnowflakeCredentials], password: str
) -> None:
    credentials = make_credentials(port=1, login_timeout=5)
    with pytest.raises(SnowflakeConnectionError) as caught:
        credentials.test_connection()
    message = str(caught.value)
    assert message.startswith(
        "cannot connect to Snowflake account 'plait-test' as user 'tester' (authenticator 'snowflake', "
        "role 'TESTER', via http://127.0.0.1:1): "
    )
    assert "Could not connect to Snowflake backend" in message
    assert "check account" in message
    assert caught.value.errno == 250001
    assert password not in message
