"""Sign and verify a file's SHA-256 with the service's RSA keys.

An attestation is a compact JWS (RS256, ``kid`` = the key id, ``typ`` ``deepfake-attestation+jws``;
its format: ``model_contract.attestations``) over the file's SHA-256, its size and the signing time,
checkable offline with the public keys like the receipts. The binary envelope that came before it
(RSA-2048 PKCS#1 v1.5 (SHA-256) over a payload binding the file's SHA-256, the signing time and the
key id, carried with the time and key id in plain base64) is still made for ``signature_base64``
(deprecated) and still verifies. A signature alone over the file's hash (what the original service
made) is no proof of *when* or by *which* key, so it still verifies, reported as ``legacy``.
Several public keys can verify (rotation: one active private key, the previous keys' public
halves), selected by key id. The digest is computed while the upload streams in, so signing never
reads the file again. The private key comes from a mounted secret (``DEEPFAKE_SIGNING_KEY``) or is
generated once into ``DEEPFAKE_KEYS_DIR`` with mode 0600; it is never regenerated while one exists
(old signatures would stop verifying) and never belongs in the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from joserfc import jwk, jws
from joserfc.errors import JoseError
from joserfc.jwk import KeyParameters

from model_contract.attestations import (
    ATTESTATION_TYPE,
    attestation_claims,
    attestation_claims_of,
    attestation_header,
    attestation_mismatch,
)
from model_contract.receipts import (  # the receipt's format, shared with the clients that check it
    LAST_SECOND,
    MALFORMED,
    MAX_RECEIPT_DEPTH,
    receipt_claims,
    receipt_header,
    strict_json,
)

__all__ = [
    "ATTESTATION_TYPE",
    "LAST_SECOND",
    "MALFORMED",
    "MAX_RECEIPT_DEPTH",
    "Signer",
    "date_of",
    "receipt_header",
    "strict_json",
]

KEY_FILE = "signing_key.pem"
_PREHASHED = utils.Prehashed(hashes.SHA256())


ENVELOPE_MAGIC = b"DFA1"  # the deprecated binary attestation envelope, version 1
RECEIPT_TYPE = "deepfake-receipt+jws"  # analysis receipts: JWS over what the service said about a file
PAYLOAD_PREFIX = b"deepfake-attestation-v1\0"


def key_id_of(public_key: rsa.RSAPublicKey) -> str:
    """SHA-256 of the DER public key: stable, and derivable by anyone holding the key."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def attestation_payload(sha256_digest: bytes, signed_at_ms: int, key_id: str) -> bytes:
    return PAYLOAD_PREFIX + sha256_digest + signed_at_ms.to_bytes(8, "big") + bytes.fromhex(key_id)


@dataclass(frozen=True)
class Verification:
    valid: bool
    kind: str  # "jws-attestation", "attestation" (the old envelope), "legacy" (a bare signature), or "unknown"
    key_id: str | None = None
    signed_at: datetime | None = None
    error: str | None = None
    malformed: bool = False  # unreadable, not merely unproven: the route answers 400 malformed_token


class Signer:
    """The active private key, and every public key that may verify (the active one included)."""

    def __init__(self, private_key: rsa.RSAPrivateKey, previous: list[rsa.RSAPublicKey] | None = None) -> None:
        self._private_key = private_key
        self._public_key = private_key.public_key()
        self.key_id = key_id_of(self._public_key)
        self.public_pem = _pem(self._public_key)
        self.signature_length = self._public_key.key_size // 8
        self.public_keys = {key_id_of(key): key for key in [self._public_key, *(previous or [])]}

    def sign(self, sha256_digest: bytes) -> bytes:
        """A bare signature over the hash (the original's format); kept for interoperability tests."""
        return self._private_key.sign(sha256_digest, padding.PKCS1v15(), _PREHASHED)

    def sign_attestation(self, sha256_hex: str, size: int, signed_at: datetime) -> str:
        """A compact JWS attestation (``model_contract.attestations``); ``signed_at`` in whole seconds."""
        return self._compact_jws(ATTESTATION_TYPE, attestation_claims_of(sha256_hex, size, int(signed_at.timestamp())))

    def verify_attestation(self, token: str, sha256_hex: str, size: int) -> Verification:
        """Valid only where a key of this service signed a well-formed attestation of this file (its
        SHA-256 and size). Never raises on what a caller sends: anything else is ``valid: false``."""
        header, error = attestation_header(token)
        if header is None:  # unreadable (400), or a readable JWS that is no attestation (valid: false)
            unreadable = self.unreadable_receipt(token) is not None
            return Verification(False, "jws-attestation", error=error, malformed=unreadable)
        key_id = header["kid"]
        payload, error = self._verified_payload(token, header, "attestation")
        if payload is None:
            return Verification(False, "jws-attestation", key_id, error=error)
        claims, problem = attestation_claims(payload)
        if claims is None:
            error = f"signed by this service's key, but not a well-formed attestation: {problem}"
            return Verification(False, "jws-attestation", key_id, error=error)
        signed_at = date_of(claims["iat"])  # attestation_claims checked it is a date
        mismatch = attestation_mismatch(claims, sha256_hex, size)
        return Verification(mismatch is None, "jws-attestation", key_id, signed_at, mismatch)

    def attest(self, sha256_digest: bytes, signed_at: datetime) -> bytes:
        """The deprecated binary envelope (``signature_base64``): magic, key id, time in ms, signature."""
        signed_at_ms = int(signed_at.timestamp() * 1000)
        payload = attestation_payload(sha256_digest, signed_at_ms, self.key_id)
        signature = self._private_key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
        return ENVELOPE_MAGIC + bytes.fromhex(self.key_id) + signed_at_ms.to_bytes(8, "big") + signature

    def verify(self, sha256_digest: bytes, signature: bytes) -> Verification:
        if signature.startswith(ENVELOPE_MAGIC) and len(signature) > 44:
            return self._verify_envelope(sha256_digest, signature)
        for key_id, key in self.public_keys.items():
            if len(signature) == key.key_size // 8 and _valid(key, signature, sha256_digest, _PREHASHED):
                return Verification(True, "legacy", key_id)
        lengths = sorted({key.key_size // 8 for key in self.public_keys.values()})
        if len(signature) not in lengths:
            return Verification(
                False,
                "unknown",
                error=f"signature is {len(signature)} bytes; this service's "
                f"keys make {' or '.join(map(str, lengths))}-byte signatures or attestations",
            )
        return Verification(False, "legacy", error="no key of this service made this signature over this file")

    def _verify_envelope(self, sha256_digest: bytes, envelope: bytes) -> Verification:
        key_id = envelope[4:36].hex()
        signed_at_ms = int.from_bytes(envelope[36:44], "big")
        signed_at = date_of(signed_at_ms / 1000)
        if signed_at is None:  # 8 bytes of milliseconds reach far past year 9999: no key signed such a time
            error = "the attestation's signing time is not a date (past year 9999)"
            return Verification(False, "attestation", key_id, error=error, malformed=True)
        key = self.public_keys.get(key_id)
        if key is None:
            return Verification(
                False, "attestation", key_id, signed_at, error="signed by a key this service does not know"
            )
        payload = attestation_payload(sha256_digest, signed_at_ms, key_id)
        if not _valid(key, envelope[44:], payload, hashes.SHA256()):
            return Verification(
                False, "attestation", key_id, signed_at, error="the attestation does not match this file, time and key"
            )
        return Verification(True, "attestation", key_id, signed_at)

    def sign_receipt(self, claims: dict) -> str:
        """A compact JWS (RS256, ``kid`` = key id) over the claims: verifiable offline with the public key."""
        return self._compact_jws(RECEIPT_TYPE, claims)

    def _compact_jws(self, typ: str, claims: dict) -> str:
        header = {"alg": "RS256", "kid": self.key_id, "typ": typ}
        payload = json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()
        return jws.serialize_compact(header, payload, jwk.RSAKey.import_key(self._private_key))

    @staticmethod
    def unreadable_receipt(token: str) -> str | None:
        """Why ``token`` cannot be read as a JWS at all (no header, a ``kid`` that is not a string), or
        None: the routes answer such a token 400, and any readable one ``valid`` or not (a receipt
        given as an attestation, or the reverse, is readable: ``valid: false``)."""
        header = receipt_header(token)
        if header is None:
            return "not a compact JWS receipt (three base64url parts, the first a JSON object)"
        if not isinstance(header.get("kid"), str):
            return "the receipt's header names no key id (kid must be a string)"
        return None

    def read_receipt(self, token: str) -> tuple[dict | None, str | None, str | None]:
        """(claims, key id, error): claims only when a key of this service signed exactly these bytes
        and they are a well-formed receipt. Never raises on what a caller sends: a token that is not
        one is an error string, so the route answers ``valid: false`` instead of a 500."""
        if (unreadable := self.unreadable_receipt(token)) is not None:
            return None, None, unreadable
        header = receipt_header(token)
        assert header is not None  # unreadable_receipt read it
        key_id = header["kid"]
        payload, error = self._verified_payload(token, header, "receipt")
        if payload is None:
            return None, key_id, error
        claims, problem = receipt_claims(payload)
        if claims is None:
            return None, key_id, f"signed by this service's key, but not a well-formed receipt: {problem}"
        return claims, key_id, None

    def _verified_payload(self, token: str, header: dict, what: str) -> tuple[bytes | None, str | None]:
        """(payload, None) where the key the header's ``kid`` names signed the token (RS256), else
        (None, why); ``header`` is the token's own, its ``kid`` checked to be a string."""
        key = self.public_keys.get(header["kid"])
        if key is None or header.get("alg") != "RS256":
            return None, "signed by a key this service does not know"
        try:
            return jws.deserialize_compact(token, jwk.RSAKey.import_key(key), algorithms=["RS256"]).payload, None
        except (JoseError, *MALFORMED):
            return None, f"the {what}'s signature does not match its contents"

    def public_pems(self) -> dict[str, str]:
        return {key_id: _pem(key) for key_id, key in self.public_keys.items()}

    def jwks(self) -> dict[str, list[dict]]:
        """Every key that verifies here as a JSON Web Key Set (RFC 7517): what JWS libraries and API
        gateways fetch to check the receipts, ``kid`` the same key id the receipts name."""
        keys = []
        for key_id, key in self.public_keys.items():
            parameters: KeyParameters = {"kid": key_id, "use": "sig", "alg": "RS256"}
            keys.append(jwk.RSAKey.import_key(key, parameters).as_dict(private=False))
        return {"keys": keys}


def date_of(seconds: float) -> datetime | None:
    """The UTC time ``seconds`` after 1970, or None where no datetime holds it (before 1970, after 9999)."""
    if not 0 <= seconds <= LAST_SECOND:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, ValueError, OSError):  # a platform's own limits
        return None


def _valid(
    key: rsa.RSAPublicKey, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm | utils.Prehashed
) -> bool:
    try:
        key.verify(signature, data, padding.PKCS1v15(), algorithm)
        return True
    except InvalidSignature:
        return False


def _pem(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def read_public_keys(folder: Path | None) -> list[rsa.RSAPublicKey]:
    """Previous keys' public halves (``*.pem``), so their signatures keep verifying after a rotation."""
    if folder is None or not folder.is_dir():
        return []
    keys = []
    for path in sorted(folder.glob("*.pem")):
        key = serialization.load_pem_public_key(path.read_bytes())
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError(f"{path.name} is not an RSA public key")
        keys.append(key)
    return keys


def _read_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA private key")
    return key


def load_signer(signing_key: Path | None, keys_dir: Path, previous_keys_dir: Path | None = None) -> Signer:
    previous = read_public_keys(previous_keys_dir)
    if signing_key is not None:
        return Signer(_read_key(signing_key), previous)
    path = keys_dir / KEY_FILE
    if path.exists():
        return Signer(_read_key(path), previous)
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # Written whole under a temporary name, then linked into place: link() fails if a key exists,
    # so two workers starting together never both write one, nor read a half-written file.
    handle, temporary = tempfile.mkstemp(prefix=".key-", dir=keys_dir)  # mode 0600
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(pem)
        os.link(temporary, path)
    except FileExistsError:
        return Signer(_read_key(path), previous)
    finally:
        os.unlink(temporary)
    return Signer(key, previous)
