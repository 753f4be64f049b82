"""Check a webhook the service sent: its signature, and that it is not a replay.

Standard library only, so a receiver can copy this one file. The scheme is Stripe's: the service
sends ``X-Deepfake-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``, the HMAC keyed with the
owner's webhook secret (its text as UTF-8 bytes) over ``f"{t}.".encode() + body``, the body exactly
as received (verify before parsing: re-serialised JSON is not the same bytes). More than one ``v1``
may come (a secret being rotated); one matching is enough.

    payload = verify(secret, request.headers["X-Deepfake-Signature"], request.body)

Only the body and the time are signed: read what happened from the body, not from the
``X-Deepfake-Event`` header. ``X-Deepfake-Delivery`` is the same in every retry of one delivery:
keep the ones seen (for longer than ``tolerance_s``) to act on each delivery once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

SIGNATURE_HEADER = "X-Deepfake-Signature"
EVENT_HEADER = "X-Deepfake-Event"
DELIVERY_HEADER = "X-Deepfake-Delivery"
MAX_HEADER_LENGTH = 4096  # a handful of signatures; more is not the service's


class InvalidSignature(Exception):
    """Not a webhook the service signed with this secret in the last ``tolerance_s``: answer 400 and drop it."""


def verify(secret: str, signature_header: str, body: bytes, tolerance_s: int = 300, now: float | None = None) -> dict:
    """The webhook's JSON payload, once its signature and time check out; else InvalidSignature.

    ``tolerance_s`` bounds the time either way: older is a replay, far newer a clock that cannot be
    trusted to have refused one."""
    timestamp, signatures = _parse(signature_header)
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    # every candidate compared, in constant time each: which one matched says nothing to a timer
    matched = [hmac.compare_digest(expected, candidate) for candidate in signatures]
    if not any(matched):
        raise InvalidSignature("no signature matches this body with this secret")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise InvalidSignature(f"signed {current - timestamp:.0f} s from now, outside the {tolerance_s} s tolerance")
    try:
        payload = json.loads(body)
    except ValueError as error:  # UnicodeDecodeError included
        raise InvalidSignature(f"the signed body is not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise InvalidSignature("the signed body is not a JSON object")
    return payload


def _parse(header: str) -> tuple[int, list[str]]:
    """``t`` (exactly one, whole seconds) and every ``v1``; unknown schemes are skipped, as Stripe's are."""
    if not isinstance(header, str) or len(header) > MAX_HEADER_LENGTH:
        raise InvalidSignature("the signature header is missing or too long")
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, separator, value = item.strip().partition("=")
        if not separator:
            continue
        if key == "t":
            timestamps.append(value.strip())
        elif key == "v1":
            signatures.append(value.strip().lower())
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise InvalidSignature("the signature header needs exactly one t=<unix seconds>")
    if not signatures:
        raise InvalidSignature("the signature header has no v1= signature")
    return int(timestamps[0]), signatures
