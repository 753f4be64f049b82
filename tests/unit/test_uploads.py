"""preprocess_service.uploads.receive_upload: the streaming multipart parser behind every upload.

Driven with real starlette Requests whose body arrives in small chunks (7 bytes: boundaries and
headers split across reads), as uvicorn delivers them. It must give the file's exact bytes and
SHA-256, a file name that is only a name and has no control characters, refuse what is too large,
empty or malformed with the right 4xx error, and never leave its temporary file behind.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from starlette.requests import ClientDisconnect, Request

from preprocess_service.errors import EmptyUpload, InvalidRequest, MalformedUpload, UploadTimeout, UploadTooLarge
from preprocess_service.uploads import MAX_TEXT_FIELD_BYTES, ReadLimits, Upload, receive_upload

BOUNDARY = "unit-test-boundary-1234"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
VIDEO = bytes(range(256)) * 40 + b"\r\n--not-the-boundary\r\n" + b"tail"  # holds CR LF and dashes

Part = tuple[str, bytes]  # (Content-Disposition, data)


def file_part(data: bytes, filename: str = "clip.mp4", name: str = "file") -> Part:
    return f'form-data; name="{name}"; filename="{filename}"', data


def text_part(name: str, value: str) -> Part:
    return f'form-data; name="{name}"', value.encode()


def multipart(*parts: Part, close: bool = True) -> bytes:
    body = b""
    for disposition, data in parts:
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode("utf-8", "surrogateescape")
        body += b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
    if close:
        body += f"--{BOUNDARY}--\r\n".encode()
    return body


def request_of(
    body: bytes,
    content_type: str = CONTENT_TYPE,
    chunk: int = 7,
    content_length: int | None = -1,
    disconnect_after: int | None = None,
    delay_s: float = 0.0,
) -> Request:
    """A Request whose ``receive`` yields ``body`` in ``chunk``-byte messages (``content_length`` -1:
    the body's own length, None: no header); after ``disconnect_after`` messages, the client leaves."""
    headers = [(b"content-type", content_type.encode())]
    if content_length is not None:
        length = len(body) if content_length == -1 else content_length
        headers.append((b"content-length", str(length).encode()))
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
    sent = 0

    async def receive() -> dict:
        nonlocal sent
        if delay_s:
            await asyncio.sleep(delay_s)
        if disconnect_after is not None and sent >= disconnect_after or sent >= len(pieces):
            return {"type": "http.disconnect"}
        sent += 1
        return {"type": "http.request", "body": pieces[sent - 1], "more_body": sent < len(pieces)}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "headers": headers,
        "query_string": b"",
        "client": ("127.0.0.1", 50000),
    }
    return Request(scope, receive)


async def _read(request: Request, tmp_path: Path, max_bytes: int = 1 << 20, **kwargs) -> tuple[Upload, bytes]:
    async with receive_upload(request, max_bytes, tmp_path, **kwargs) as upload:
        return upload, upload.path.read_bytes()


def received(request: Request, tmp_path: Path, max_bytes: int = 1 << 20, **kwargs) -> tuple[Upload, bytes]:
    """The Upload, and its file's bytes as they were on disk inside the block."""
    return asyncio.run(_read(request, tmp_path, max_bytes, **kwargs))


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.exists() else []


def run_inside(request: Request, tmp_path: Path, body: Callable[[Upload], Awaitable[None]], **kwargs) -> None:
    async def main() -> None:
        async with receive_upload(request, 1 << 20, tmp_path, **kwargs) as upload:
            await body(upload)

    asyncio.run(main())


# --- a good upload -------------------------------------------------------------------------------


def test_the_file_arrives_whole_with_its_sha256_and_size(tmp_path: Path) -> None:
    upload, on_disk = received(request_of(multipart(file_part(VIDEO))), tmp_path)
    assert on_disk == VIDEO
    assert upload.size == len(VIDEO)
    assert upload.sha256 == hashlib.sha256(VIDEO).hexdigest()
    assert upload.filename == "clip.mp4"
    assert upload.path.parent == tmp_path


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 100_000])
def test_any_chunking_of_the_body_gives_the_same_file(tmp_path: Path, chunk: int) -> None:
    body = multipart(text_part("rule", "original"), file_part(VIDEO))
    upload, on_disk = received(request_of(body, chunk=chunk), tmp_path)
    assert on_disk == VIDEO
    assert upload.fields == {"rule": "original"}


def test_text_fields_before_and_after_the_file_are_returned(tmp_path: Path) -> None:
    body = multipart(text_part("rule", "original"), file_part(b"video"), text_part("note", "café ✓"))
    upload, on_disk = received(request_of(body), tmp_path)
    assert upload.fields == {"rule": "original", "note": "café ✓"}
    assert on_disk == b"video"


def test_the_file_name_loses_its_path_and_control_characters(tmp_path: Path) -> None:
    body = multipart(file_part(b"video", filename="../../etc/\x1bevil.mp4"))
    upload, _ = received(request_of(body), tmp_path)
    assert upload.filename == "evil.mp4"


def test_a_windows_path_in_the_file_name_is_stripped_too(tmp_path: Path) -> None:
    upload, _ = received(request_of(multipart(file_part(b"video", filename="C:\\Users\\me\\clip.mp4"))), tmp_path)
    assert upload.filename == "clip.mp4"


def test_a_bidi_override_in_the_file_name_is_removed(tmp_path: Path) -> None:
    upload, _ = received(request_of(multipart(file_part(b"video", filename="clip\u202e4pm.exe"))), tmp_path)
    assert upload.filename == "clip4pm.exe"


def test_a_file_exactly_at_the_cap_is_accepted(tmp_path: Path) -> None:
    upload, on_disk = received(request_of(multipart(file_part(b"x" * 100))), tmp_path, max_bytes=100)
    assert upload.size == 100
    assert on_disk == b"x" * 100


def test_the_temporary_file_is_removed_after_the_block(tmp_path: Path) -> None:
    upload, _ = received(request_of(multipart(file_part(VIDEO))), tmp_path)
    assert not upload.path.exists()
    assert leftovers(tmp_path) == []


def test_the_temporary_file_is_removed_when_the_block_raises(tmp_path: Path) -> None:
    seen: list[Path] = []

    async def fail(upload: Upload) -> None:
        seen.append(upload.path)
        assert upload.path.exists()
        raise RuntimeError("the analysis failed")

    with pytest.raises(RuntimeError, match="the analysis failed"):
        run_inside(request_of(multipart(file_part(VIDEO))), tmp_path, fail)
    assert seen and not seen[0].exists()
    assert leftovers(tmp_path) == []


# --- refusals ------------------------------------------------------------------------------------


def test_a_file_over_the_cap_is_too_large_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(UploadTooLarge):
        received(request_of(multipart(file_part(b"x" * 101)), content_length=None), tmp_path, max_bytes=100)
    assert leftovers(tmp_path) == []


def test_a_declared_length_far_over_the_cap_is_refused_before_any_file_exists(tmp_path: Path) -> None:
    folder = tmp_path / "uploads"
    request = request_of(multipart(file_part(b"x")), content_length=100 + 2 * MAX_TEXT_FIELD_BYTES + 1)
    with pytest.raises(UploadTooLarge):
        asyncio.run(_read(request, folder, max_bytes=100))
    assert not folder.exists()  # refused before the upload folder or a temporary file was made


def test_text_fields_count_toward_the_cap(tmp_path: Path) -> None:
    fields = [text_part(f"f{i}", "y" * (MAX_TEXT_FIELD_BYTES - 1)) for i in range(2)]
    body = multipart(*fields, file_part(b"x" * 10))
    with pytest.raises(UploadTooLarge):
        received(request_of(body, chunk=4096, content_length=None), tmp_path, max_bytes=10)
    assert leftovers(tmp_path) == []


def test_a_text_field_longer_than_its_limit_is_invalid(tmp_path: Path) -> None:
    body = multipart(text_part("rule", "y" * (MAX_TEXT_FIELD_BYTES + 1)), file_part(b"x"))
    with pytest.raises(InvalidRequest):
        received(request_of(body, chunk=4096), tmp_path)
    assert leftovers(tmp_path) == []


def test_an_empty_file_is_an_empty_upload(tmp_path: Path) -> None:
    with pytest.raises(EmptyUpload):
        received(request_of(multipart(file_part(b""))), tmp_path)
    assert leftovers(tmp_path) == []


def test_a_body_without_a_file_part_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="missing form field 'file'"):
        received(request_of(multipart(text_part("rule", "original"))), tmp_path)
    assert leftovers(tmp_path) == []


def test_a_file_field_without_a_filename_is_not_the_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="missing form field 'file'"):
        received(request_of(multipart(text_part("file", "not a file"))), tmp_path)


def test_two_file_parts_are_invalid(tmp_path: Path) -> None:
    body = multipart(file_part(b"one", "a.mp4"), file_part(b"two", "b.mp4"))
    with pytest.raises(InvalidRequest, match="more than one"):
        received(request_of(body), tmp_path)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "multipart/form-data", "multipart/form-data; boundary=", "text/plain; boundary=abc", ""],
)
def test_a_body_that_is_not_multipart_with_a_boundary_is_invalid_before_any_file(
    tmp_path: Path, content_type: str
) -> None:
    folder = tmp_path / "uploads"
    with pytest.raises(InvalidRequest):
        asyncio.run(_read(request_of(multipart(file_part(b"x")), content_type=content_type), folder))
    assert not folder.exists()


def test_a_boundary_longer_than_rfc_2046_allows_is_malformed(tmp_path: Path) -> None:
    with pytest.raises(MalformedUpload, match="boundary"):
        received(request_of(b"", content_type="multipart/form-data; boundary=" + "b" * 71), tmp_path)


def test_a_body_that_does_not_start_with_the_boundary_is_malformed(tmp_path: Path) -> None:
    with pytest.raises(MalformedUpload):
        received(request_of(b"this is not a multipart body at all"), tmp_path)
    assert leftovers(tmp_path) == []


def test_a_part_with_a_broken_header_line_is_malformed(tmp_path: Path) -> None:
    body = f"--{BOUNDARY}\r\nbad header line\r\n\r\nxx\r\n--{BOUNDARY}--\r\n".encode()
    with pytest.raises(MalformedUpload):
        received(request_of(body), tmp_path)
    assert leftovers(tmp_path) == []


def test_a_single_header_line_over_the_parsers_limit_is_malformed(tmp_path: Path) -> None:
    body = multipart(file_part(b"x", filename="a" * 9000 + ".mp4"))
    with pytest.raises(MalformedUpload):
        received(request_of(body, chunk=1024), tmp_path)
    assert leftovers(tmp_path) == []


def test_part_headers_over_their_total_limit_are_malformed(tmp_path: Path) -> None:
    # each line is within python-multipart's own per-line limit; together they exceed the service's 8 KiB
    padding = "".join(f"X-Pad-{i}: {'p' * 3000}\r\n" for i in range(3))
    body = (
        f'--{BOUNDARY}\r\n{padding}Content-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n'
        f"video\r\n--{BOUNDARY}--\r\n"
    ).encode()
    with pytest.raises(MalformedUpload, match="headers exceed"):
        received(request_of(body, chunk=1024), tmp_path)
    assert leftovers(tmp_path) == []


def test_a_body_cut_off_inside_the_file_part_is_malformed(tmp_path: Path) -> None:
    body = multipart(file_part(VIDEO))
    truncated = body[: body.index(VIDEO) + len(VIDEO) // 2]
    with pytest.raises(MalformedUpload):
        received(request_of(truncated), tmp_path)


def test_a_body_without_its_closing_boundary_is_malformed(tmp_path: Path) -> None:
    body = multipart(file_part(VIDEO), text_part("rule", "original"), close=False)  # every part whole
    with pytest.raises(MalformedUpload, match="closing boundary"):
        received(request_of(body), tmp_path)
    assert leftovers(tmp_path) == []


def test_a_client_that_disconnects_mid_upload_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(ClientDisconnect):
        received(request_of(multipart(file_part(VIDEO)), disconnect_after=20), tmp_path)
    assert leftovers(tmp_path) == []


def test_a_client_that_stalls_times_out_and_leaves_no_file(tmp_path: Path) -> None:
    limits = ReadLimits(idle_timeout_s=0.05)
    with pytest.raises(UploadTimeout, match="no data"):
        received(request_of(multipart(file_part(VIDEO)), delay_s=1.0), tmp_path, limits=limits)
    assert leftovers(tmp_path) == []


def test_a_client_slower_than_the_minimum_rate_after_the_grace_period_times_out(tmp_path: Path) -> None:
    limits = ReadLimits(idle_timeout_s=5.0, min_rate_bytes_s=10_000_000, grace_s=0.01)
    with pytest.raises(UploadTimeout, match="slower than"):
        received(request_of(multipart(file_part(VIDEO)), delay_s=0.005), tmp_path, limits=limits)
    assert leftovers(tmp_path) == []
