"""Signed URLs: signed locally with a generated service account key, checked against the
key's public half, and fetched from the emulator."""

from __future__ import annotations

import hashlib
import urllib.request
from datetime import timedelta
from urllib.parse import parse_qsl, quote, urlsplit

import pytest

from plait_gcp import GcpCredentials, GcpError, GcsBucket


def _check_v4_signature(url: str, info: dict[str, str], method: str = "GET") -> dict[str, str]:
    """Rebuild the V4 string to sign from the URL and verify its signature with the public key."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    signature = bytes.fromhex(query.pop("X-Goog-Signature"))
    canonical_query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(query.items()))
    canonical_request = "\n".join([method, parts.path, canonical_query, f"host:{parts.netloc}\n",
                                   query["X-Goog-SignedHeaders"], "UNSIGNED-PAYLOAD"])
    scope = query["X-Goog-Credential"].split("/", 1)[1]
    to_sign = "\n".join(["GOOG4-RSA-SHA256", query["X-Goog-Date"], scope,
                         hashlib.sha256(canonical_request.encode()).hexdigest()])
    public = serialization.load_pem_private_key(info["private_key"].encode(), password=None).public_key()
    public.verify(signature, to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())  # raises on a mismatch
    return query


def test_a_signed_url_is_signed_by_the_key_and_serves_the_object(bucket, service_account_info, gcs_endpoint):
    bucket.write_path("reports/q4.csv", b"id,total\n1,9.5\n")
    signer = GcsBucket(bucket_name=bucket.bucket_name, credentials=GcpCredentials(
        service_account_info=service_account_info, api_endpoint=gcs_endpoint))
    url = signer.generate_signed_url("reports/q4.csv", expiration=timedelta(minutes=15))
    assert url.startswith(f"{gcs_endpoint}/{bucket.bucket_name}/reports/q4.csv?")
    query = _check_v4_signature(url, service_account_info)
    assert query["X-Goog-Credential"].startswith(service_account_info["client_email"] + "/")
    assert query["X-Goog-Expires"] == "900"
    from cryptography.exceptions import InvalidSignature

    with pytest.raises(InvalidSignature):  # the check is real: another object's URL does not verify
        _check_v4_signature(url.replace("/reports/q4.csv?", "/reports/q3.csv?"), service_account_info)
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.read() == b"id,total\n1,9.5\n"


def test_signing_needs_a_key(bucket):
    with pytest.raises(GcpError, match="signing a URL for gs://.*/a.csv needs a service account key"):
        bucket.generate_signed_url("a.csv")  # anonymous credentials cannot sign
    with pytest.raises(ValueError, match="expiration must be between 1 second and 7 days"):
        bucket.generate_signed_url("a.csv", expiration=timedelta(days=8))
