"""Sign and verify a file's SHA-256 with the service's RSA key.

RSA-2048, PKCS#1 v1.5 over SHA-256 of the exact bytes: signatures made by the original service
still verify with its public key. The digest is computed while the upload streams in, so signing
never reads the file again. The private key comes from a mounted secret (``DEEPFAKE_SIGNING_KEY``)
or is generated once into ``DEEPFAKE_KEYS_DIR`` with mode 0600; it is never regenerated while one
exists (old signatures would stop verifying) and never belongs in the repository.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

KEY_FILE = "signing_key.pem"
_PREHASHED = utils.Prehashed(hashes.SHA256())


class Signer:
    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self._private_key = private_key
        self._public_key = private_key.public_key()
        der = self._public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.key_id = hashlib.sha256(der).hexdigest()
        self.public_pem = self._public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        self.signature_length = self._public_key.key_size // 8

    def sign(self, sha256_digest: bytes) -> bytes:
        return self._private_key.sign(sha256_digest, padding.PKCS1v15(), _PREHASHED)

    def verify(self, sha256_digest: bytes, signature: bytes) -> bool:
        try:
            self._public_key.verify(signature, sha256_digest, padding.PKCS1v15(), _PREHASHED)
            return True
        except InvalidSignature:
            return False


def _read_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA private key")
    return key


def load_signer(signing_key: Path | None, keys_dir: Path) -> Signer:
    if signing_key is not None:
        return Signer(_read_key(signing_key))
    path = keys_dir / KEY_FILE
    if path.exists():
        return Signer(_read_key(path))
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
        return Signer(_read_key(path))
    finally:
        os.unlink(temporary)
    return Signer(key)
