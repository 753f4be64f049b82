"""Sign a file's SHA-256 with the service's key, verify a signature, publish the public key."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timezone

from fastapi import APIRouter, Depends

from preprocess_service.dependencies import Services, get_services, multipart_body, received_upload
from preprocess_service.errors import InvalidRequest, InvalidSignature
from preprocess_service.schemas import PublicKeyResponse, SignResponse, VerifyResponse
from preprocess_service.uploads import Upload

router = APIRouter(prefix="/integrity", tags=["integrity"])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


@router.post("/sign", response_model=SignResponse, openapi_extra=multipart_body())
async def sign(upload: Upload = Depends(received_upload), services: Services = Depends(get_services)) -> SignResponse:
    signature = services.signer.sign(bytes.fromhex(upload.sha256))
    return SignResponse(video_filename=upload.filename, sha256_hex=upload.sha256,
                        signature_base64=base64.b64encode(signature).decode(), signed_at=_now(),
                        key_id=services.signer.key_id)


@router.post("/verify", response_model=VerifyResponse, openapi_extra=multipart_body("signature_base64"))
async def verify(upload: Upload = Depends(received_upload), services: Services = Depends(get_services)) -> VerifyResponse:
    encoded = upload.fields.get("signature_base64")
    if encoded is None:
        raise InvalidRequest("missing form field 'signature_base64'")
    try:
        signature = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidSignature(f"signature_base64 is not valid base64: {error}") from error
    result = dict(video_filename=upload.filename, sha256_hex=upload.sha256, verified_at=_now(),
                  key_id=services.signer.key_id)
    if len(signature) != services.signer.signature_length:
        return VerifyResponse(**result, valid=False,
                              error=f"signature is {len(signature)} bytes; this key's are {services.signer.signature_length}")
    return VerifyResponse(**result, valid=services.signer.verify(bytes.fromhex(upload.sha256), signature))


@router.get("/public-key", response_model=PublicKeyResponse)
async def public_key(services: Services = Depends(get_services)) -> PublicKeyResponse:
    return PublicKeyResponse(key_id=services.signer.key_id, public_key_pem=services.signer.public_pem)
