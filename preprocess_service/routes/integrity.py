"""Attest a file's SHA-256 with the service's key (a JWS, and the deprecated binary envelope beside
it), verify an attestation (or an old envelope, or an original-style signature), publish the public
keys. Signing needs an API key whenever keys are configured."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from fastapi import APIRouter

from preprocess_service.dependencies import AdmittedDep, ServicesDep, SigningDep, UploadDep, multipart_body
from preprocess_service.errors import InvalidRequest, InvalidSignature, MalformedToken
from preprocess_service.integrity import date_of
from preprocess_service.schemas import (
    PublicKeyResponse,
    PublicKeysResponse,
    ReceiptVerifyResponse,
    SignResponse,
    VerifyResponse,
)

router = APIRouter(prefix="/integrity", tags=["integrity"])


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _signing_time() -> datetime:
    """Whole seconds: a JWS's ``iat`` is, so the JWS and the envelope (ms) bind the same time."""
    return datetime.now(UTC).replace(microsecond=0)


def _verify_body() -> dict:
    """The upload with ``attestation`` (the JWS) or ``signature_base64`` (an envelope or bare signature)."""
    body = multipart_body()
    schema = body["requestBody"]["content"]["multipart/form-data"]["schema"]
    schema["properties"]["attestation"] = {
        "type": "string",
        "description": "the compact JWS that /integrity/sign answered as `attestation`",
    }
    schema["properties"]["signature_base64"] = {
        "type": "string",
        "description": "deprecated: an attestation envelope (`signature_base64` of /integrity/sign) or the "
        "original service's bare signature, base64",
    }
    schema["anyOf"] = [{"required": ["attestation"]}, {"required": ["signature_base64"]}]
    return body


def decode_signature(encoded: str) -> bytes:
    """Standard or URL-safe base64, line-wrapped or not, padded or not: how signatures travel in mail,
    JSON and URLs."""
    compact = "".join(encoded.split()).translate(str.maketrans("-_", "+/"))
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as error:
        hint = " (a JWS attestation goes in the 'attestation' field)" if "." in compact else ""
        raise InvalidSignature(f"signature_base64 is not valid base64: {error}{hint}") from error


@router.post("/sign", response_model=SignResponse, openapi_extra=multipart_body())
async def sign(caller: SigningDep, upload: UploadDep, services: ServicesDep) -> SignResponse:
    signed_at = _signing_time()
    envelope = services.signer.attest(bytes.fromhex(upload.sha256), signed_at)
    return SignResponse(
        video_filename=upload.filename,
        sha256_hex=upload.sha256,
        attestation=services.signer.sign_attestation(upload.sha256, upload.size, signed_at),
        signature_base64=base64.b64encode(envelope).decode(),
        signed_at=signed_at.isoformat(),
        key_id=services.signer.key_id,
    )


@router.post("/verify", response_model=VerifyResponse, openapi_extra=_verify_body())
async def verify(caller: AdmittedDep, upload: UploadDep, services: ServicesDep) -> VerifyResponse:
    """Was this file signed here? ``attestation``: the JWS; ``signature_base64``: an old envelope or
    a bare signature. A token that cannot be read at all is ``400 malformed_token``; a readable one
    that proves nothing here is ``valid: false`` with its ``error``."""
    token, encoded = upload.fields.get("attestation"), upload.fields.get("signature_base64")
    if token is None and encoded is None:
        raise InvalidRequest("missing form field 'attestation' (the JWS; or 'signature_base64', deprecated)")
    if token is not None and encoded is not None:
        raise InvalidRequest("send 'attestation' or 'signature_base64', not both")
    if token is not None:
        result = services.signer.verify_attestation("".join(token.split()), upload.sha256, upload.size)
    else:
        result = services.signer.verify(bytes.fromhex(upload.sha256), decode_signature(encoded or ""))
    if result.malformed:
        raise MalformedToken(result.error or "the attestation cannot be read")
    return VerifyResponse(
        video_filename=upload.filename,
        sha256_hex=upload.sha256,
        verified_at=_now().isoformat(),
        valid=result.valid,
        kind=result.kind,
        key_id=result.key_id,
        signed_at=result.signed_at.isoformat() if result.signed_at else None,
        error=result.error,
    )


@router.post(
    "/verify-receipt",
    response_model=ReceiptVerifyResponse,
    openapi_extra=multipart_body("receipt"),
)
async def verify_receipt(caller: AdmittedDep, upload: UploadDep, services: ServicesDep) -> ReceiptVerifyResponse:
    """Did this service say this about this file? The receipt's signature must hold under one of its
    keys, and the uploaded file must be the one the receipt names (its SHA-256). Anything that is not
    such a receipt is ``valid: false`` with its ``error``, as a wrong signature is; a token that cannot
    be read as a JWS at all (no header, a ``kid`` that is not a string) is ``400 malformed_token``."""
    token = upload.fields.get("receipt")
    if token is None:
        raise InvalidRequest("missing form field 'receipt'")
    compact = "".join(token.split())
    if (unreadable := services.signer.unreadable_receipt(compact)) is not None:
        raise MalformedToken(unreadable)
    claims, key_id, error = services.signer.read_receipt(compact)
    issued_at = None
    if claims is not None:  # read_receipt checked both: iat is a date, file an object with its sha256
        issued = date_of(claims["iat"])
        issued_at = issued.isoformat() if issued else None
        if claims["file"]["sha256"] != upload.sha256:
            error = "the receipt is about another file (its SHA-256 differs from this file's)"
    return ReceiptVerifyResponse(
        valid=claims is not None and error is None,
        key_id=key_id,
        issued_at=issued_at,
        sha256_hex=upload.sha256,
        claims=claims,
        error=error,
    )


@router.get("/public-key", response_model=PublicKeyResponse)
async def public_key(services: ServicesDep) -> PublicKeyResponse:
    """The active key (the one that signs now)."""
    return PublicKeyResponse(key_id=services.signer.key_id, public_key_pem=services.signer.public_pem)


@router.get("/jwks.json")
async def jwks(services: ServicesDep) -> dict[str, list[dict]]:
    """The same keys as ``/integrity/public-keys``, as a JSON Web Key Set (RFC 7517) for JWS libraries."""
    return services.signer.jwks()


@router.get("/public-keys", response_model=PublicKeysResponse)
async def public_keys(services: ServicesDep) -> PublicKeysResponse:
    """Every key that verifies here, by key id: the active one and those rotated out."""
    return PublicKeysResponse(
        active_key_id=services.signer.key_id,
        keys=[
            PublicKeyResponse(key_id=key_id, public_key_pem=pem)
            for key_id, pem in services.signer.public_pems().items()
        ],
    )
