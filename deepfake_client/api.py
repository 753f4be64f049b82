"""The service's routes as Python calls (httpx), plus offline receipt checking (joserfc).

Needs nothing of the service's own code: receipts are checked with the public keys alone, as a
third party would (their format, shared with the service, is ``model_contract.receipts``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwk, jws
from joserfc.errors import JoseError

from model_contract.receipts import MALFORMED, receipt_claims, receipt_header
from model_contract.receipts import frames_digest as scores_digest

DEFAULT_URL = "http://127.0.0.1:8080"
BUSY_RETRIES = 5


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
    return scores_digest((frame["frame_index"], frame["p_fake"]) for frame in frames)


def check_receipt(
    token: str, public_keys: dict[str, str], file: Path, frames: list[dict] | None = None
) -> ReceiptCheck:
    """Offline: the signature under the key its ``kid`` names, the file's SHA-256, and (given the
    answer's frames) the per-frame scores' digest. Whatever the token holds, the answer is a
    ``ReceiptCheck`` (never an exception): a verifier that a crafted token crashes proves nothing."""
    header = receipt_header(token)
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
    claims, problem = receipt_claims(payload)
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
