"""The attestation's format, shared by the service that signs it and every client that checks it.

``POST /integrity/sign`` answers ``attestation``: a compact JWS (RS256, like the receipts) whose
protected header is ``{"alg": "RS256", "kid": <key id>, "typ": "deepfake-attestation+jws"}`` and
whose claims are ``{"iss": "deepfake-detector", "iat": <signing time, whole seconds since 1970>,
"sha256": <the file's SHA-256, lowercase hex>, "size": <its size in bytes>}``: "this service's key
saw a file with this hash and size at this time". The ``typ`` is required and the claims are flat
(a receipt names its file in ``file``), so neither token passes for the other.

Whoever reads one reads a hostile token: the header and claims go through the receipts' bounded
JSON (``strict_json``) and every claim a check reads is checked to be there and of its type first,
so a crafted token is "not an attestation", never a crash. No cryptography here: the signature is
checked by the service (``preprocess_service/integrity.py``) or the client (``deepfake_client/api.py``).
"""

from __future__ import annotations

import re

from model_contract.receipts import LAST_SECOND, MALFORMED, receipt_header, strict_json

ATTESTATION_TYPE = "deepfake-attestation+jws"
ISSUER = "deepfake-detector"
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def attestation_claims_of(sha256_hex: str, size: int, signed_at_s: int) -> dict:
    """What the service signs for a file."""
    return {"iss": ISSUER, "iat": signed_at_s, "sha256": sha256_hex, "size": size}


def attestation_header(token: str) -> tuple[dict | None, str | None]:
    """(the token's protected header, its ``kid`` sure to be a string, None), or (None, what is
    wrong with it)."""
    header = receipt_header(token)  # any compact JWS's header, bounded like a receipt's
    if header is None:
        return None, "not a compact JWS attestation (three base64url parts, the first a JSON object)"
    if header.get("typ") != ATTESTATION_TYPE:
        return None, f"not an attestation (its header's typ is not {ATTESTATION_TYPE})"
    if not isinstance(header.get("kid"), str):
        return None, "the attestation's header names no key id (kid must be a string)"
    return header, None


def attestation_claims(payload: bytes) -> tuple[dict | None, str | None]:
    """(claims, None) for a well-formed attestation's payload, else (None, what is wrong with it):
    ``iat`` is a time a datetime holds, ``sha256`` 64 lowercase hex digits, ``size`` a count."""
    try:
        claims = strict_json(payload)
    except MALFORMED as error:
        return None, f"its claims are not JSON an attestation holds ({type(error).__name__})"
    if not isinstance(claims, dict):
        return None, "its claims are not a JSON object"
    issued_at = claims.get("iat")
    if isinstance(issued_at, bool) or not isinstance(issued_at, int) or not 0 <= issued_at <= LAST_SECOND:
        return None, "iat is not a time (whole seconds since 1970, before year 10000)"
    sha256 = claims.get("sha256")
    if not isinstance(sha256, str) or not SHA256_HEX.fullmatch(sha256):
        return None, "sha256 is not a SHA-256 in lowercase hex"
    size = claims.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        return None, "size is not a number of bytes"
    return claims, None


def attestation_mismatch(claims: dict, sha256_hex: str, size: int) -> str | None:
    """Why well-formed ``claims`` are not about this file, or None where they are."""
    if claims["sha256"] != sha256_hex.lower():
        return "the attestation is about another file (its SHA-256 differs from this file's)"
    if claims["size"] != size:
        return "the attestation is about another file (its size differs from this file's)"
    return None
