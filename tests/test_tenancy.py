"""Many callers, one service, over real HTTP on SQLite and a real PostgreSQL: each API key sees only
its own analyses, cache and images; an operator sees and erases everything; a caller without a key
owns nothing; the history is bounded, erasable and honest about failing to store.

Every test here failed on the service before owners existed (seen: key ``b`` listed, read and
downloaded ``a``'s analysis, the SHA-256 oracle answered, images were served to anyone, a 2 MiB tag
came back whole, offsets were ignored on SQLite, a cached receipt failed after a key rotation).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import create_engine, event, text

from preprocess_service.access import hash_key
from preprocess_service.history.store import HEAD_REVISION, HistoryStore
from preprocess_service.sanitize import MAX_METADATA_CHARS
from preprocess_service.settings import Settings
from testing.server import post_file, running_service
from tests import media

KEYS = {"a": "key-of-tenant-a", "b": "key-of-tenant-b", "op": "key-of-the-operator"}
A, B, OP = ({"X-API-Key": KEYS[name]} for name in ("a", "b", "op"))
ANONYMOUS: dict[str, str] = {}
SECRET_NAME = "A-confidential-board-meeting-2026.mp4"


def keyed(repository: Path, database_url: str, tmp_path: Path, **overrides) -> Settings:
    """Keys configured but not required: the case where an anonymous caller may still analyze."""
    entries = f"a:{hash_key(KEYS['a'])},b:{hash_key(KEYS['b'])},op:{hash_key(KEYS['op'])}:operator"
    options = {
        "model_repository": repository,
        "database_url": database_url,
        "history_cache": True,
        "keys_dir": tmp_path / "keys",
        "api_keys": entries,
        "artifacts": True,
        "artifacts_dir": tmp_path / "artifacts",
        **overrides,
    }
    return Settings(**options)


@dataclass
class Tenants:
    url: str
    video: Path
    answer: dict  # a's analysis of ``video``

    def get(self, path: str, headers: dict[str, str], **params) -> httpx.Response:
        return httpx.get(self.url + path, headers=headers, params=params, timeout=30)

    def delete(self, path: str, headers: dict[str, str], **params) -> httpx.Response:
        return httpx.delete(self.url + path, headers=headers, params=params, timeout=30)

    def upload(self, headers: dict[str, str], video: Path | None = None, refresh: bool = False) -> dict:
        path = "/predict/?refresh=1" if refresh else "/predict/"
        response = post_file(self.url, (video or self.video).read_bytes(), path, filename=SECRET_NAME, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def tenants(demo_repository, database_url, tmp_path) -> Iterator[Tenants]:
    video = media.moving_face_video(tmp_path / "face.mp4", count=30)
    with running_service(keyed(demo_repository, database_url, tmp_path)) as url:
        first = post_file(url, video.read_bytes(), filename=SECRET_NAME, headers=A).json()
        assert first["history_id"] and first["cached"] is False
        yield Tenants(url, video, first)


def _wait_for(check, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_each_key_sees_only_its_own_history(tenants):
    answer, analysis_id = tenants.answer, tenants.answer["history_id"]
    assert tenants.get("/analyses", A).json()["total"] == 1
    assert tenants.get("/analyses", B).json() == {"items": [], "total": 0, "page": 1, "per_page": 20}
    assert tenants.get("/analyses", OP).json()["items"][0]["filename"] == SECRET_NAME  # the operator sees all
    for path in (f"/analyses/{analysis_id}", f"/analyses/{analysis_id}.csv"):
        assert tenants.get(path, A).status_code == 200 and tenants.get(path, OP).status_code == 200
        refused = tenants.get(path, B)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
        assert SECRET_NAME not in refused.text
    # no "has anyone uploaded this file?" oracle, listing or re-uploading
    assert tenants.get("/analyses", B, sha256=answer["sha256_hex"]).json()["total"] == 0
    as_b = tenants.upload(B)
    assert as_b["cached"] is False and as_b["history_id"] not in (None, analysis_id)
    assert as_b["analyzed_at"] != answer["analyzed_at"]
    # the caller's own cache still answers
    again = tenants.upload(A)
    assert again["cached"] is True and again["history_id"] == analysis_id
    assert again["analyzed_at"] == answer["analyzed_at"]
    stats = {name: tenants.get("/stats", headers).json()["analyses"] for name, headers in (("a", A), ("b", B))}
    assert stats == {"a": 1, "b": 1} and tenants.get("/stats", OP).json()["analyses"] == 2
    # the operator sees everything, but its own uploads are answered from its own cache only
    as_operator = tenants.upload(OP)
    assert as_operator["cached"] is False and as_operator["history_id"] not in (analysis_id, as_b["history_id"])


def test_a_caller_without_a_key_owns_nothing(tenants):
    analysis_id = tenants.answer["history_id"]
    for path in ("/analyses", f"/analyses/{analysis_id}", f"/analyses/{analysis_id}.csv", "/stats"):
        response = tenants.get(path, ANONYMOUS)
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
        assert SECRET_NAME not in response.text
    assert tenants.delete("/analyses", ANONYMOUS, sha256=tenants.answer["sha256_hex"]).status_code == 401
    assert tenants.delete(f"/analyses/{analysis_id}", ANONYMOUS).status_code == 401
    assert tenants.get(f"/analyses/{analysis_id}", A).status_code == 200  # still there
    anonymous = tenants.upload(ANONYMOUS)  # may analyze (keys are not required here) ...
    assert anonymous["cached"] is False and anonymous["history_id"] is None  # ... but is never answered from a row
    assert all(frame["url"] is None for frame in anonymous["frames_for_display"])  # and keeps no images
    assert tenants.get("/stats", OP).json()["analyses"] == 1  # nothing stored under anyone's name


def test_images_are_served_to_their_owner_only(tenants):
    url = tenants.answer["frames_for_display"][0]["url"]
    assert url.startswith("/artifacts/")
    _wait_for(lambda: tenants.get(url, A).status_code == 200)  # written after the answer was sent
    image = tenants.get(url, A)
    assert image.headers["content-type"] == "image/jpeg" and image.content[:2] == b"\xff\xd8"
    assert tenants.get(url, OP).status_code == 200
    assert tenants.get(url, B).status_code == 404 and tenants.get(url, ANONYMOUS).status_code == 401
    assert tenants.get("/artifacts/../keys/signing_key.pem", A).status_code == 404
    assert tenants.get(url.replace("frame_", "signing_key_"), A).status_code == 404


def test_owners_erase_their_own_and_the_operator_everything(tenants):
    analysis_id, sha256 = tenants.answer["history_id"], tenants.answer["sha256_hex"]
    image = tenants.answer["cropped_faces"][0]["url"]
    _wait_for(lambda: tenants.get(image, A).status_code == 200)
    assert tenants.delete(f"/analyses/{analysis_id}", B).status_code == 404  # not b's to erase
    erased = tenants.delete(f"/analyses/{analysis_id}", A)
    assert erased.status_code == 200 and erased.json() == {"deleted": 1, "ids": [analysis_id]}
    assert tenants.get(f"/analyses/{analysis_id}", A).status_code == 404
    assert tenants.get(image, A).status_code == 404 and tenants.get(image, OP).status_code == 404  # images gone
    assert tenants.upload(A)["cached"] is False  # and the cache forgot it

    # erasure by file: the caller's own analyses of it, never another's of the same bytes
    a_again = tenants.upload(A, refresh=True)
    a_image = a_again["cropped_faces"][0]["url"]
    _wait_for(lambda: tenants.get(a_image, A).status_code == 200)
    b_first = tenants.upload(B)
    erased_by_b = tenants.delete("/analyses", B, sha256=sha256).json()
    assert erased_by_b == {"deleted": 1, "ids": [b_first["history_id"]]}  # b's only, though a has the file too
    assert tenants.get(f"/analyses/{a_again['history_id']}", A).status_code == 200
    assert tenants.get(a_image, A).status_code == 200
    erased_by_a = tenants.delete("/analyses", A, sha256=sha256).json()
    assert erased_by_a["deleted"] == 2 and a_again["history_id"] in erased_by_a["ids"]  # both of a's analyses
    assert tenants.get(a_image, A).status_code == 404  # its images went with it
    assert tenants.get("/stats", OP).json()["analyses"] == 0

    # the operator erases anyone's, by id and by file
    b_second, b_third = tenants.upload(B), tenants.upload(B, refresh=True)
    by_id = tenants.delete(f"/analyses/{b_second['history_id']}", OP)
    assert by_id.json() == {"deleted": 1, "ids": [b_second["history_id"]]}
    assert tenants.delete("/analyses", OP, sha256=sha256).json()["ids"] == [b_third["history_id"]]
    assert tenants.get("/stats", OP).json()["analyses"] == 0
    assert tenants.delete("/analyses", A).status_code == 422  # an erasure names a file


def test_without_keys_one_shared_owner_sees_everything(demo_repository, database_url, tmp_path):
    settings = Settings(model_repository=demo_repository, database_url=database_url, keys_dir=tmp_path / "keys")
    video = media.moving_face_video(tmp_path / "face.mp4", count=30)
    with running_service(settings) as url:
        first = post_file(url, video).json()
        assert first["history_id"] and httpx.get(url + "/analyses").json()["total"] == 1
        assert httpx.get(url + f"/analyses/{first['history_id']}").status_code == 200
        assert httpx.delete(url + f"/analyses/{first['history_id']}").json()["deleted"] == 1


def test_time_filters_honour_offsets_and_times_carry_theirs(tenants):
    created = datetime.fromisoformat(tenants.get("/analyses", A).json()["items"][0]["created_at"])
    assert created.utcoffset() == timedelta(0)
    plus_two, minus_five = timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))
    before = (created - timedelta(minutes=30)).astimezone(plus_two).isoformat()
    after = (created + timedelta(minutes=30)).astimezone(minus_five).isoformat()
    assert tenants.get("/analyses", A, since=before).json()["total"] == 1
    assert tenants.get("/analyses", A, since=after).json()["total"] == 0
    assert tenants.get("/analyses", A, until=before).json()["total"] == 0
    assert tenants.get("/analyses", A, until=after).json()["total"] == 1


def test_metadata_strings_are_bounded_and_cleaned(demo_repository, database_url, tmp_path):
    source = media.moving_face_video(tmp_path / "face.mp4", count=30)
    tag = "\x1b[31mApple\x07\u202e" + "M" * (2 * 1024 * 1024)  # escape codes, a bidi override, 2 MiB
    video = media.tagged_video(source, tmp_path / "tagged.mov", {"com.apple.quicktime.make": tag})
    settings = keyed(demo_repository, database_url, tmp_path)
    with running_service(settings) as url:
        boundary = "tenancy-boundary"
        body = (
            (  # by hand: httpx would percent-encode the control bytes in the file name
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="\x1b]0;pwned\x07name.mov"\r\n'
                f"Content-Type: video/quicktime\r\n\r\n"
            ).encode()
            + video.read_bytes()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {**A, "Content-Type": f"multipart/form-data; boundary={boundary}"}
        response = httpx.post(url + "/predict/", content=body, headers=headers, timeout=120)
        answer = response.json()
        assert len(response.content) < 100_000
        make = answer["metadata"]["make"]
        assert make.startswith("[31mApple") and len(make) == MAX_METADATA_CHARS and make.endswith("…")
        assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c == "\u202e" for c in make)
        assert answer["filename"] == "]0;pwnedname.mov"
        stored = httpx.get(url + f"/analyses/{answer['history_id']}", headers=A).json()
        assert stored["answer"]["metadata"]["make"] == make


def test_listings_never_read_the_stored_answers(database_url):
    store = HistoryStore(database_url)
    store.migrate()
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    store.page("a", per_page=10)
    store.stats("a")
    store.stats(None)
    assert statements and not any("answer" in statement for statement in statements)
    store.close()


def test_retention_bounds_rows_per_owner_and_removes_their_images(demo_repository, database_url, tmp_path):
    video = media.moving_face_video(tmp_path / "face.mp4", count=30)
    settings = keyed(demo_repository, database_url, tmp_path, history_max_per_owner=2, history_purge_interval_s=0.3)
    with running_service(settings) as url:
        client = Tenants(url, video, {})
        answers = [client.upload(A, refresh=True) for _ in range(3)]
        client.upload(B)
        oldest = answers[0]["frames_for_display"][0]["url"]
        _wait_for(lambda: client.get("/analyses", A).json()["total"] == 2)
        kept = [item["id"] for item in client.get("/analyses", A).json()["items"]]
        assert kept == [answers[2]["history_id"], answers[1]["history_id"]]  # the newest two
        assert client.get("/analyses", B).json()["total"] == 1  # another owner's rows are not counted
        _wait_for(lambda: client.get(answers[2]["frames_for_display"][0]["url"], A).status_code == 200)
        assert client.get(oldest, A).status_code == 404  # the purged analysis's images went with it


def test_retention_by_age(demo_repository, database_url, tmp_path):
    from preprocess_service.history.recorder import History
    from preprocess_service.metrics import Metrics
    from preprocess_service.retention import purge_once

    video = media.moving_face_video(tmp_path / "face.mp4", count=30)
    settings = keyed(demo_repository, database_url, tmp_path, history_retention_days=1)
    with running_service(settings) as url:
        client = Tenants(url, video, {})
        analysis_id = client.upload(A)["history_id"]
        _wait_for(lambda: any(settings.artifacts_dir.glob(f"*/{analysis_id}/*.jpg")))
    store = HistoryStore(database_url)
    history = History(store, Metrics())
    assert purge_once(history, settings, now=datetime.now(UTC) + timedelta(hours=23)) == 0
    assert any(settings.artifacts_dir.glob(f"*/{analysis_id}/*.jpg"))
    assert purge_once(history, settings, now=datetime.now(UTC) + timedelta(hours=25)) == 1
    assert store.page(None).total == 0
    assert not any(settings.artifacts_dir.glob(f"*/*{analysis_id}*")), "the purged analysis's images stayed"
    store.close()


def test_a_cached_answer_carries_a_receipt_signed_now(demo_repository, database_url, tmp_path):
    """After the signing key is rotated (and the old one dropped), a cached answer's receipt still
    verifies here: it is signed with the active key, for the same file and scores."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    video = media.moving_face_video(tmp_path / "face.mp4", count=30)
    with running_service(keyed(demo_repository, database_url, tmp_path)) as url:
        first = Tenants(url, video, {}).upload(A)
    new_key = tmp_path / "rotated.pem"
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    new_key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with running_service(keyed(demo_repository, database_url, tmp_path, signing_key=new_key)) as url:
        cached = Tenants(url, video, {}).upload(A)
        assert cached["cached"] is True and cached["analyzed_at"] == first["analyzed_at"]
        assert cached["receipt"] != first["receipt"]
        check = post_file(url, video, "/integrity/verify-receipt", data={"receipt": cached["receipt"]}, headers=A)
        assert check.json()["valid"] is True, check.json()
        claims = check.json()["claims"]
        assert (
            claims["analysis_id"] == first["history_id"]
            and claims["verdicts"]["sequence"]["p_fake"] == (first["verdicts"]["sequence"]["p_fake"])
        )
        old = post_file(url, video, "/integrity/verify-receipt", data={"receipt": first["receipt"]}, headers=A)
        assert old.json()["valid"] is False  # the dropped key's receipt no longer verifies: the reason for re-signing


def test_existing_rows_get_the_shared_owner_when_migrated(database_url):
    from alembic import command
    from alembic.config import Config

    from preprocess_service.history.store import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, "0001")  # the schema before owners, with one stored analysis
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO analyses (id, created_at, filename, size, sha256, model_key, checkpoint_sha256,"
                " precision, untrained_demo, rule, result, p_fake, total_s, answer) VALUES ('0123456789abcdef"
                "0123456789abcdef', :t, 'old.mp4', 1, :h, 'k', 'c', 'fp32', false, 'sequence', 'FAKE', 0.7, 1.0, '{}')"
            ),
            {"t": datetime.now(UTC), "h": "e" * 64},
        )
    engine.dispose()
    store = HistoryStore(database_url)
    store.migrate()
    assert store.revision() == HEAD_REVISION
    assert store.page("local").total == 1 and store.page("a").total == 0 and store.page(None).total == 1
    store.close()


def test_a_removed_database_file_shows_in_readyz(demo_repository, tmp_path):
    path = tmp_path / "history.sqlite3"
    video = media.moving_face_video(tmp_path / "face.mp4", count=30)
    settings = Settings(model_repository=demo_repository, database_url=f"sqlite:///{path}", keys_dir=tmp_path / "k")
    with running_service(settings) as url:
        assert httpx.get(url + "/readyz").json()["history"] == {"status": "ok"}
        assert post_file(url, video).json()["history_id"]
        path.unlink()  # removed under the running service: SQLite would write to the deleted inode
        readiness = httpx.get(url + "/readyz")
        assert readiness.status_code == 200 and readiness.json()["status"] == "degraded"
        assert "removed" in readiness.json()["history"]["error"]
        answer = post_file(url, video, "/predict/?refresh=1")
        assert answer.status_code == 200 and answer.json()["history_id"] is None  # answered, not stored
        assert httpx.get(url + "/readyz").json()["status"] == "degraded"


def test_security_headers_on_every_answer(tenants):
    for path, headers in (("/", ANONYMOUS), ("/analyses", A), ("/analyses", ANONYMOUS), ("/no-such", A)):
        response = tenants.get(path, headers)
        policy = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self';" in policy, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
