"""The service's routes as Python calls (httpx), plus offline receipt and attestation checking
(joserfc) and the key store that pins the service's public keys on first use.

Needs nothing of the service's own code: receipts and attestations are checked with the public keys
alone, as a third party would (their formats, shared with the service, are ``model_contract.receipts``
and ``model_contract.attestations``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwk, jws
from joserfc.errors import JoseError

from deepfake_client.retry import RetryPolicy, send_with_retry, send_with_retry_async
from model_contract.attestations import attestation_claims, attestation_header, attestation_mismatch
from model_contract.receipts import MALFORMED, receipt_claims, receipt_header
from model_contract.receipts import frames_digest as scores_digest

DEFAULT_URL = "http://127.0.0.1:8080"
FINAL_JOB_STATES = frozenset({"done", "failed", "cancelled"})  # a job in one of these changes no more


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


@dataclass(frozen=True)
class AttestationCheck:
    valid: bool
    claims: dict | None  # sha256, size, iat (the signing time), once the signature holds
    key_id: str | None
    error: str | None = None


class KeyStoreError(Exception):
    """The key store, or the keys offered to it, cannot be trusted as they are: nothing was written."""


def public_key_id(pem: str) -> str:
    """The key id the service gives an RSA public key (SHA-256 of its DER), so that a listing can be
    checked against its own PEMs and two PEMs of one key compare equal however they are wrapped.
    Raises ``ValueError`` where ``pem`` is not an RSA public key in PEM."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:  # UnicodeError is a ValueError
        raise ValueError("not a PEM public key") from error
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def default_key_store() -> Path:
    """Where the pinned public keys live: DEEPFAKE_CLIENT_KEYS, else the user's configuration folder
    (``$XDG_CONFIG_HOME``, by default ``~/.config``), ``deepfake-client/keys.json``."""
    if configured := os.environ.get("DEEPFAKE_CLIENT_KEYS"):
        return Path(configured).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "deepfake-client" / "keys.json"


def read_key_store(path: Path) -> dict[str, str]:
    """The pinned keys (key id -> PEM); none where the file does not exist yet."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        keys = json.loads(path.read_text())
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise KeyStoreError(f"{path} is not a key store (a JSON object of key id -> PEM public key)") from error
    if not isinstance(keys, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items()):
        raise KeyStoreError(f"{path} is not a key store (a JSON object of key id -> PEM public key)")
    return keys


def pin_keys(path: Path, listed: Mapping[str, str]) -> list[str]:
    """Trust on first use: adds the listed keys (key id -> PEM) not yet pinned in ``path`` and returns
    their ids. A listed key whose PEM is not the key its id names, or a key id pinned to another key,
    is refused (``KeyStoreError``) and nothing is written: a receipt checked against a key swapped in
    later would prove only that whoever swapped it signed it."""
    path = Path(path)
    pinned = read_key_store(path)
    if not listed:
        raise KeyStoreError("the service lists no public keys: nothing to pin")
    for key_id, pem in listed.items():
        try:
            derived = public_key_id(pem)
        except ValueError as error:
            raise KeyStoreError(f"the service lists key id {key_id} with {error}: refusing to pin it") from None
        if derived != key_id:
            raise KeyStoreError(f"the service lists key id {key_id} with the public key of {derived}: refusing it")
        if key_id in pinned and _key_id_or_none(pinned[key_id]) != key_id:
            raise KeyStoreError(
                f"{path} pins key id {key_id} to another public key than the service gives now: refusing to "
                f"replace it (trust on first use); if you trust the service's key, remove that entry and save again"
            )
    new = [key_id for key_id in listed if key_id not in pinned]
    if new:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({**pinned, **{key_id: listed[key_id] for key_id in new}}, indent=2, sort_keys=True) + "\n"
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=path.name, suffix=".tmp", delete=False) as out:
            out.write(text)  # written whole, then renamed: an interrupted save leaves the old store intact
        os.replace(out.name, path)
    return new


def _key_id_or_none(pem: str) -> str | None:
    try:
        return public_key_id(pem)
    except ValueError:
        return None


def is_attestation(signature: str) -> bool:
    """A compact JWS (an attestation) rather than base64 (an envelope or bare signature): it has dots."""
    return "." in signature


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
    payload, error = _signed_payload(token, public_keys, key_id, "receipt")
    if payload is None:
        return ReceiptCheck(False, None, key_id, error)
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


def check_attestation(token: str, public_keys: dict[str, str], file: Path) -> AttestationCheck:
    """Offline, as ``check_receipt``: the signature under the key its ``kid`` names, then the file's
    SHA-256 and size. Whatever the token holds, the answer is an ``AttestationCheck``, never an exception."""
    header, error = attestation_header(token)
    if header is None:
        return AttestationCheck(False, None, None, error)
    key_id = header["kid"]
    payload, error = _signed_payload(token, public_keys, key_id, "attestation")
    if payload is None:
        return AttestationCheck(False, None, key_id, error)
    claims, problem = attestation_claims(payload)
    if claims is None:
        return AttestationCheck(False, None, key_id, f"signed, but not a well-formed attestation: {problem}")
    mismatch = attestation_mismatch(claims, sha256_of(file), Path(file).stat().st_size)
    return AttestationCheck(mismatch is None, claims, key_id, mismatch)


def _signed_payload(token: str, public_keys: dict[str, str], key_id: str, what: str) -> tuple[bytes | None, str | None]:
    """(payload, None) where the key pinned as ``key_id`` signed the token (RS256), else (None, why)."""
    pem = public_keys.get(key_id)
    if pem is None:
        return None, "signed by a key not among the given public keys"
    try:
        key = jwk.RSAKey.import_key(pem)
    except (JoseError, *MALFORMED):
        return None, "the public key given for this key id is not an RSA key"
    try:
        return jws.deserialize_compact(token, key, algorithms=["RS256"]).payload, None
    except (JoseError, *MALFORMED):
        return None, f"the signature does not match the {what}'s contents"


def _frames_digest_or_none(frames: object) -> str | None:
    """The digest of an answer's frames, or None where they are not an answer's frames."""
    try:
        return frames_digest(frames)  # type: ignore[arg-type]
    except (KeyError, AttributeError, *MALFORMED):
        return None


class DeepfakeClient:
    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        """``transport`` replaces the network under the one-file calls (an ``httpx.MockTransport`` in
        tests); ``predict_many`` always opens its own connections. ``retry``: how predictions answered
        429 or 503 are asked again (``deepfake_client.retry``)."""
        self.url = url.rstrip("/")
        self.retry = retry
        self._headers = {"X-API-Key": api_key} if api_key else {}
        self._timeout = httpx.Timeout(timeout_s, connect=10)
        self._http = httpx.Client(headers=self._headers, timeout=self._timeout, transport=transport)

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
                raise ServiceError(response.status_code, error["code"], error.get("message", ""))
            except (ValueError, KeyError, TypeError):
                raise ServiceError(response.status_code, f"http_{response.status_code}", response.text[:200]) from None
        return response

    def _post_file(
        self, route: str, path: Path, fields: dict | None = None, retry: bool = False, **params: Any
    ) -> httpx.Response:
        path = Path(path)

        def send() -> httpx.Response:
            with path.open("rb") as stream:  # opened per attempt: a retry sends the whole file again
                return self._http.post(
                    self.url + route, files={"file": (path.name, stream)}, data=fields, params=params
                )

        return self._answer(send_with_retry(send, self.retry) if retry else send())

    def predict(self, path: Path, refresh: bool = False) -> dict:
        return self._post_file("/predict/", path, retry=True, refresh=int(refresh)).json()

    def csv(self, path: Path) -> str:
        return self._post_file("/predict_csv/", path, retry=True, format="csv").text

    def sign(self, path: Path) -> dict:
        """``attestation`` (a JWS), and ``signature_base64`` (the deprecated envelope) beside it."""
        return self._post_file("/integrity/sign", path).json()

    def verify(self, path: Path, signature: str) -> dict:
        """The service's check of ``sign``'s ``attestation`` or, deprecated, its ``signature_base64``
        (told apart by the JWS's dots, which base64 never holds)."""
        field = "attestation" if is_attestation(signature) else "signature_base64"
        return self._post_file("/integrity/verify", path, {field: signature}).json()

    def verify_receipt(self, path: Path, receipt: str) -> dict:
        """The service's own check (``POST /integrity/verify-receipt``)."""
        return self._post_file("/integrity/verify-receipt", path, {"receipt": receipt}).json()

    def public_keys(self) -> dict[str, str]:
        """Every public key that verifies the service's receipts (``GET /integrity/public-keys``), by key id."""
        response = self._answer(self._http.get(self.url + "/integrity/public-keys"))
        try:
            keys = {entry["key_id"]: entry["public_key_pem"] for entry in response.json()["keys"]}
        except (ValueError, KeyError, TypeError) as error:
            raise ServiceError(response.status_code, "bad_answer", "the public keys' listing is not one") from error
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items()):
            raise ServiceError(response.status_code, "bad_answer", "the public keys' listing is not one")
        return keys

    def verify_receipt_offline(
        self, path: Path, receipt: str, public_keys: dict[str, str] | None = None, frames: list[dict] | None = None
    ) -> ReceiptCheck:
        """Checked here, with the public keys (fetched once if not given): the service is not trusted."""
        return check_receipt(receipt, public_keys or self.public_keys(), Path(path), frames)

    def verify_attestation_offline(
        self, path: Path, attestation: str, public_keys: dict[str, str] | None = None
    ) -> AttestationCheck:
        """Checked here, with the public keys (fetched once if not given): the service is not trusted."""
        return check_attestation(attestation, public_keys or self.public_keys(), Path(path))

    def history(self, **filters: Any) -> dict:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._answer(self._http.get(self.url + "/analyses", params=params)).json()

    def _job_call(self, method: str, route: str, params: dict | None = None) -> Any:
        """A jobs route, 429 and 503 asked again after their Retry-After: every poll counts against
        the caller's rate, so a long batch meets 429 now and then, and should wait, not fail."""

        def send() -> httpx.Response:
            return self._http.request(method, self.url + route, params=params)

        response = self._answer(send_with_retry(send, self.retry))
        try:
            return response.json()
        except ValueError as error:  # not the service's JSON (an id like ".." reaches another route)
            raise ServiceError(response.status_code, "bad_answer", f"{route} answered no JSON") from error

    def submit_job(self, path: Path, webhook_url: str | None = None, refresh: bool = False) -> dict:
        """``POST /jobs``: ``{"id", "state", "href"}`` at once (202). 429 (too many unfinished jobs of
        this caller's, or over its rate) and 503 are asked again after their Retry-After, as a
        prediction is. ``webhook_url``: where the outcome is POSTed; ``refresh``: as ``predict``'s."""
        fields = {"refresh": "1" if refresh else "0"} | ({"webhook_url": webhook_url} if webhook_url else {})
        return self._post_file("/jobs", path, fields, retry=True).json()

    def job(self, job_id: str) -> dict:
        """``GET /jobs/{id}``: state, progress, the timeline so far, and once done the result. Another
        owner's job, or one erased, is ``ServiceError`` 404 ``not_found``."""
        return self._job_call("GET", "/jobs/" + quote(job_id, safe=""))

    def jobs(self, page: int = 1, per_page: int = 20, state: str | None = None) -> dict:
        """``GET /jobs``: this caller's jobs, newest first, without results or timelines (one request
        tells how many jobs stand where: what a batch polls)."""
        params = {"page": page, "per_page": per_page} | ({"state": state} if state else {})
        return self._job_call("GET", "/jobs", params)

    def cancel_job(self, job_id: str) -> dict:
        """``DELETE /jobs/{id}``: a queued or running job is cancelled (``"erased": false``); a finished
        one is erased, its result with it (``"erased": true``)."""
        return self._job_call("DELETE", "/jobs/" + quote(job_id, safe=""))

    def wait_job(
        self,
        job_id: str,
        poll_s: float = 2.0,
        timeout_s: float | None = None,
        on_progress: Callable[[dict], None] | None = None,
    ) -> dict:
        """Polls ``job`` every ``poll_s`` until the job is done, failed or cancelled, and returns that
        last view. Every poll counts against the caller's rate (120 a minute by default): poll every
        few seconds, not in a loop. ``on_progress`` is given each view; past ``timeout_s``,
        ``TimeoutError`` (the job goes on on the service)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            view = self.job(job_id)
            if on_progress is not None:
                on_progress(view)
            if view["state"] in FINAL_JOB_STATES:
                return view
            if deadline is not None and time.monotonic() + poll_s > deadline:
                raise TimeoutError(f"job {job_id} is still {view['state']} after {timeout_s} s")
            time.sleep(poll_s)

    def predict_many(
        self,
        paths: list[Path],
        concurrency: int = 4,
        refresh: bool = False,
        on_done: Callable[[Path, dict | ServiceError], None] = lambda path, result: None,
    ) -> dict[Path, dict | ServiceError]:
        """Several files at once (asyncio, one connection pool); 429 and 503 answers are asked again
        after their Retry-After (``retry``). Each file's answer or error, by path."""
        return asyncio.run(self._predict_many(paths, concurrency, refresh, on_done))

    def async_session(self, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
        """A connection pool for ``predict_async`` with this client's key and timeouts (close it:
        ``async with``). ``transport``: an ``httpx.MockTransport`` in tests."""
        return httpx.AsyncClient(headers=self._headers, timeout=self._timeout, transport=transport)

    async def predict_async(self, session: httpx.AsyncClient, name: str, content: bytes, refresh: bool = False) -> dict:
        """``predict`` of a file already read, over ``session`` (``async_session``), 429 and 503
        retried. Raises ``ServiceError`` for a refusal and ``httpx.HTTPError`` where the service
        cannot be reached."""
        response = await send_with_retry_async(
            lambda: session.post(
                self.url + "/predict/", files={"file": (name, content)}, params={"refresh": int(refresh)}
            ),
            self.retry,
        )
        return self._answer(response).json()

    async def _predict_many(self, paths, concurrency, refresh, on_done) -> dict[Path, dict | ServiceError]:
        results: dict[Path, dict | ServiceError] = {}
        queue: asyncio.Queue[Path] = asyncio.Queue()
        for path in paths:
            queue.put_nowait(Path(path))

        async def one(session: httpx.AsyncClient, path: Path) -> dict | ServiceError:
            content = await asyncio.to_thread(path.read_bytes)
            try:
                return await self.predict_async(session, path.name, content, refresh)
            except ServiceError as error:
                return error

        async def worker(session: httpx.AsyncClient) -> None:
            while not queue.empty():
                path = queue.get_nowait()
                try:
                    results[path] = await one(session, path)
                except (OSError, httpx.HTTPError) as error:
                    results[path] = ServiceError(0, "unreachable", str(error) or type(error).__name__)
                on_done(path, results[path])

        async with self.async_session() as session:
            await asyncio.gather(*(worker(session) for _ in range(max(1, concurrency))))
        return {Path(path): results[Path(path)] for path in paths}
