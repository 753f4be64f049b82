"""The service's routes as Python calls (httpx), plus offline receipt checking (joserfc).

Needs nothing of the service's own code: receipts are checked with the public keys alone, as a
third party would.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwk, jws
from joserfc.errors import JoseError

DEFAULT_URL = "http://127.0.0.1:8080"
BUSY_RETRIES = 5
# What decoding a hostile token can raise (binascii.Error and UnicodeDecodeError are ValueErrors;
# named so a reader sees they were thought of). The service's own check guards the same way.
MALFORMED = (ValueError, TypeError, OverflowError, RecursionError, binascii.Error, UnicodeError)
LAST_SECOND = 253402300799  # 9999-12-31T23:59:59Z
MAX_RECEIPT_DEPTH = 8  # a receipt's claims nest 3 deep (verdicts, rule, fields); its header 1


class ServiceError(Exception):
    """The service refused: its HTTP status and machine-readable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class ReceiptCheck:
    valid: bool
    claims: dict | None
    key_id: str | None
    error: str | None = None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def frames_digest(frames: list[dict]) -> str:
    """What a receipt's ``frames_digest`` is computed from: ``[[frame_index, p_fake rounded to 6]]``."""
    canonical = [[int(f["frame_index"]), None if f["p_fake"] is None else round(float(f["p_fake"]), 6)] for f in frames]
    return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()


def _strict_json(raw: bytes) -> object:
    """JSON a receipt could hold: nesting bounded (the decoder alone stops near 1000 levels with a
    RecursionError), no NaN or infinity, no lone surrogates. Raises one of ``MALFORMED``."""
    value = json.loads(raw)
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:  # iterative: the tree is hostile
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


def _receipt_header(token: str) -> dict | None:
    """A compact JWS's protected header, or None where the token is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = _strict_json(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except MALFORMED:
        return None
    return header if isinstance(header, dict) else None


def _receipt_claims(payload: bytes) -> tuple[dict | None, str | None]:
    """(claims, None) for a well-formed receipt's payload, else (None, what is wrong with it). The
    service writes no such claims, so any that are signed anyway are refused here, not tripped over."""
    try:
        claims = _strict_json(payload)
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


def check_receipt(
    token: str, public_keys: dict[str, str], file: Path, frames: list[dict] | None = None
) -> ReceiptCheck:
    """Offline: the signature under the key its ``kid`` names, the file's SHA-256, and (given the
    answer's frames) the per-frame scores' digest. Whatever the token holds, the answer is a
    ``ReceiptCheck`` (never an exception): a verifier that a crafted token crashes proves nothing."""
    header = _receipt_header(token)
    if header is None:
        return ReceiptCheck(
            False, None, None, "not a compact JWS receipt (three base64url parts, the first a JSON object)"
        )
    key_id = header.get("kid")
    if not isinstance(key_id, str):
        return ReceiptCheck(False, None, None, "the receipt's header names no key id (kid must be a string)")
    pem = public_keys.get(key_id)
    if pem is None:
        return ReceiptCheck(False, None, key_id, "signed by a key not among the given public keys")
    try:
        key = jwk.RSAKey.import_key(pem)
    except (JoseError, *MALFORMED):
        return ReceiptCheck(False, None, key_id, "the public key given for this key id is not an RSA key")
    try:
        payload = jws.deserialize_compact(token, key, algorithms=["RS256"]).payload
    except (JoseError, *MALFORMED):
        return ReceiptCheck(False, None, key_id, "the signature does not match the receipt's contents")
    claims, problem = _receipt_claims(payload)
    if claims is None:
        return ReceiptCheck(False, None, key_id, f"signed, but not a well-formed receipt: {problem}")
    if claims["file"]["sha256"] != sha256_of(file):
        return ReceiptCheck(False, claims, key_id, "the receipt is about another file")
    if frames is not None:
        digest = _frames_digest_or_none(frames)
        if digest is None:
            return ReceiptCheck(False, claims, key_id, "the given frames are not an answer's per-frame scores")
        if claims.get("frames_digest") != digest:
            return ReceiptCheck(False, claims, key_id, "the per-frame scores differ from the receipt's")
    return ReceiptCheck(True, claims, key_id)


def _frames_digest_or_none(frames: object) -> str | None:
    """The digest of an answer's frames, or None where they are not an answer's frames."""
    try:
        return frames_digest(frames)  # type: ignore[arg-type]
    except (KeyError, AttributeError, *MALFORMED):
        return None


class DeepfakeClient:
    def __init__(self, url: str = DEFAULT_URL, api_key: str | None = None, timeout_s: float = 300.0) -> None:
        self.url = url.rstrip("/")
        self._headers = {"X-API-Key": api_key} if api_key else {}
        self._timeout = httpx.Timeout(timeout_s, connect=10)
        self._http = httpx.Client(headers=self._headers, timeout=self._timeout)

    def __enter__(self) -> DeepfakeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @staticmethod
    def _answer(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                raise ServiceError(response.status_code, error["code"], error["message"])
            except (ValueError, KeyError, TypeError):
                raise ServiceError(response.status_code, f"http_{response.status_code}", response.text[:200]) from None
        return response

    def _post_file(self, route: str, path: Path, fields: dict | None = None, **params: Any) -> httpx.Response:
        path = Path(path)
        with path.open("rb") as stream:
            return self._answer(
                self._http.post(self.url + route, files={"file": (path.name, stream)}, data=fields, params=params)
            )

    def predict(self, path: Path, refresh: bool = False) -> dict:
        return self._post_file("/predict/", path, refresh=int(refresh)).json()

    def csv(self, path: Path) -> str:
        return self._post_file("/predict_csv/", path, format="csv").text

    def sign(self, path: Path) -> dict:
        return self._post_file("/integrity/sign", path).json()

    def verify(self, path: Path, signature_base64: str) -> dict:
        return self._post_file("/integrity/verify", path, {"signature_base64": signature_base64}).json()

    def verify_receipt(self, path: Path, receipt: str) -> dict:
        """The service's own check (``POST /integrity/verify-receipt``)."""
        return self._post_file("/integrity/verify-receipt", path, {"receipt": receipt}).json()

    def public_keys(self) -> dict[str, str]:
        listing = self._answer(self._http.get(self.url + "/integrity/public-keys")).json()
        return {entry["key_id"]: entry["public_key_pem"] for entry in listing["keys"]}

    def verify_receipt_offline(
        self, path: Path, receipt: str, public_keys: dict[str, str] | None = None, frames: list[dict] | None = None
    ) -> ReceiptCheck:
        """Checked here, with the public keys (fetched once if not given): the service is not trusted."""
        return check_receipt(receipt, public_keys or self.public_keys(), Path(path), frames)

    def history(self, **filters: Any) -> dict:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._answer(self._http.get(self.url + "/analyses", params=params)).json()

    def predict_many(
        self,
        paths: list[Path],
        concurrency: int = 4,
        refresh: bool = False,
        on_done: Callable[[Path, dict | ServiceError], None] = lambda path, result: None,
    ) -> dict[Path, dict | ServiceError]:
        """Several files at once (asyncio, one connection pool); 503 busy answers are retried after
        their Retry-After. Each file's answer or error, by path."""
        return asyncio.run(self._predict_many(paths, concurrency, refresh, on_done))

    async def _predict_many(self, paths, concurrency, refresh, on_done) -> dict[Path, dict | ServiceError]:
        results: dict[Path, dict | ServiceError] = {}
        queue: asyncio.Queue[Path] = asyncio.Queue()
        for path in paths:
            queue.put_nowait(Path(path))

        async def one(client: httpx.AsyncClient, path: Path) -> dict | ServiceError:
            content = await asyncio.to_thread(path.read_bytes)
            for attempt in range(BUSY_RETRIES + 1):
                response = await client.post(
                    self.url + "/predict/", files={"file": (path.name, content)}, params={"refresh": int(refresh)}
                )
                if response.status_code == 503 and attempt < BUSY_RETRIES:
                    await asyncio.sleep(float(response.headers.get("Retry-After", "2")))
                    continue
                try:
                    return self._answer(response).json()
                except ServiceError as error:
                    return error
            raise AssertionError("unreachable")

        async def worker(client: httpx.AsyncClient) -> None:
            while not queue.empty():
                path = queue.get_nowait()
                try:
                    results[path] = await one(client, path)
                except (OSError, httpx.HTTPError) as error:
                    results[path] = ServiceError(0, "unreachable", str(error) or type(error).__name__)
                on_done(path, results[path])

        async with httpx.AsyncClient(headers=self._headers, timeout=self._timeout) as client:
            await asyncio.gather(*(worker(client) for _ in range(max(1, concurrency))))
        return {Path(path): results[Path(path)] for path in paths}
