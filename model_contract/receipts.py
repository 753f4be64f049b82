"""The analysis receipt's format, shared by the service that signs it and every client that checks
it: what a well-formed receipt holds, and the digest of the per-frame scores it covers.

A receipt is a compact JWS (RS256) whose claims are JSON the service writes. Whoever reads one reads
a hostile token: the JSON is bounded (nesting, NaN, lone surrogates) and the claims a check reads
(``iat``, ``file.sha256``) are checked to be there and of their type before anything uses them, so
a crafted token is "not a receipt", never a crash. No cryptography here: the signature is checked
with the public keys by the service (integrity.py) or the client (deepfake_client/api.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Iterable

# What decoding a hostile token can raise. binascii.Error and UnicodeDecodeError are ValueErrors
# already; they are named so that whoever reads a guard sees they were thought of.
MALFORMED = (ValueError, TypeError, OverflowError, RecursionError, binascii.Error, UnicodeError)
LAST_SECOND = 253402300799  # 9999-12-31T23:59:59Z, the last second a datetime holds
MAX_RECEIPT_DEPTH = 8  # a receipt's claims nest 3 deep (verdicts, rule, fields); its header 1


def frames_digest(frames: Iterable[tuple[int, float | None]]) -> str:
    """SHA-256 of the per-frame scores as canonical JSON ``[[frame_index, p_fake rounded to 6], ...]``
    (``null`` where no face): a client recomputes it from the CSV or JSON answer's frames."""
    canonical = [[int(index), None if p is None else round(float(p), 6)] for index, p in frames]
    return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()


def strict_json(raw: bytes) -> object:
    """JSON that can be answered as JSON again: nesting bounded (the decoder alone stops near 1000
    levels with a RecursionError, and answering even 900 levels overflows the serialiser), no NaN or
    infinity, no lone surrogates (neither encodes as UTF-8). Raises one of ``MALFORMED``."""
    value = json.loads(raw)
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:  # iterative: the tree is hostile, the stack is not ours to spend
        item, depth = pending.pop()
        if depth > MAX_RECEIPT_DEPTH:
            raise ValueError(f"nested deeper than {MAX_RECEIPT_DEPTH} levels")
        if isinstance(item, dict):
            pending.extend((key, depth) for key in item)
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            item.encode("utf-8")
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN or infinity")
    return value


def receipt_header(token: str) -> dict | None:
    """A compact JWS's protected header, or None where the token is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = strict_json(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except MALFORMED:
        return None
    return header if isinstance(header, dict) else None


def receipt_claims(payload: bytes) -> tuple[dict | None, str | None]:
    """(claims, None) for a well-formed receipt's payload, else (None, what is wrong with it): what
    a check reads (``iat``, ``file.sha256``) is sure to be there and of its type."""
    try:
        claims = strict_json(payload)
    except MALFORMED as error:
        return None, f"its claims are not JSON a receipt holds ({type(error).__name__})"
    if not isinstance(claims, dict):
        return None, "its claims are not a JSON object"
    issued_at = claims.get("iat")
    if isinstance(issued_at, bool) or not isinstance(issued_at, int) or not 0 <= issued_at <= LAST_SECOND:
        return None, "iat is not a time (whole seconds since 1970, before year 10000)"
    file = claims.get("file")
    if not isinstance(file, dict) or not isinstance(file.get("sha256"), str):
        return None, "file is not an object naming the file's sha256"
    return claims, None
