"""Multipart uploads streamed to a temporary file, with a size cap and a streaming SHA-256.

Starlette's own form parsing would spool the whole upload before any limit could apply; here the
request body is parsed as it arrives (python-multipart's streaming parser), the file part goes
straight to one temporary file while it is hashed, and reading stops at the cap (413; text fields
count toward it too). A client that stalls, or sends slower than a minimum rate, is cut off with
408 so it cannot hold an analysis slot. Malformed multipart bodies are 400, never a 500. The file
is always deleted when the request is done, whatever happened.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from preprocess_service.errors import EmptyUpload, InvalidRequest, MalformedUpload, UploadTimeout, UploadTooLarge
from preprocess_service.sanitize import MAX_FILENAME_CHARS, clean_text

FILE_FIELD = "file"
MAX_TEXT_FIELD_BYTES = 64 * 1024
MAX_PART_HEADER_BYTES = 8 * 1024
MAX_BOUNDARY_BYTES = 70  # RFC 2046


@dataclass(frozen=True)
class ReadLimits:
    """How slow a client may be. A stalled upload holds an analysis slot and a temporary file."""

    idle_timeout_s: float = 15.0  # no byte for this long: 408
    min_rate_bytes_s: float = 32 * 1024  # on average, after the grace period
    grace_s: float = 5.0


@dataclass
class Upload:
    path: Path
    filename: str
    size: int
    sha256: str
    fields: dict[str, str] = field(default_factory=dict)


class _Receiver:
    """The parser's callbacks: headers per part, file data to disk, text fields to memory."""

    def __init__(self, file_handle: BinaryIO | None, max_bytes: int) -> None:  # None: only checks headers
        self.file_handle, self.max_bytes = file_handle, max_bytes
        self.total = 0  # every part's data, text fields included, against the cap
        self.digest, self.size, self.filename, self.file_seen = hashlib.sha256(), 0, "", False
        self.fields: dict[str, str] = {}
        self._header_name = self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._is_file = False
        self._text = bytearray()

    def on_part_begin(self) -> None:
        self._headers, self._name, self._is_file, self._text = {}, None, False, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]
        self._check_header_size()

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        self._check_header_size()

    def _check_header_size(self) -> None:
        if (
            len(self._header_name) + len(self._header_value) + sum(map(len, self._headers.values()))
            > MAX_PART_HEADER_BYTES
        ):
            raise MalformedUpload(f"a multipart part's headers exceed {MAX_PART_HEADER_BYTES} bytes")

    def on_header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        self._is_file = self._name == FILE_FIELD and b"filename" in options
        if self._is_file:
            if self.file_seen:
                raise InvalidRequest(f"more than one '{FILE_FIELD}' part")
            self.file_seen = True
            name = Path(options[b"filename"].decode("utf-8", "replace")).name
            self.filename = clean_text(name, MAX_FILENAME_CHARS) or ""

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        self.total += len(chunk)
        if self.total > self.max_bytes + MAX_TEXT_FIELD_BYTES:
            raise UploadTooLarge(f"the upload exceeds {self.max_bytes / 2**20:g} MB")
        if self._is_file:
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise UploadTooLarge(f"the upload exceeds {self.max_bytes / 2**20:g} MB")
            self.digest.update(chunk)
            if self.file_handle is not None:
                self.file_handle.write(chunk)
        elif len(self._text) + len(chunk) <= MAX_TEXT_FIELD_BYTES:
            self._text += chunk
        else:
            raise InvalidRequest(f"form field '{self._name}' is longer than {MAX_TEXT_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        if not self._is_file and self._name:
            self.fields[self._name] = self._text.decode("utf-8", "replace")


async def _chunks(request: Request, limits: ReadLimits) -> AsyncIterator[bytes]:
    """The body as it arrives, or 408 when the client stalls or trickles."""
    stream = request.stream().__aiter__()
    started, received = time.monotonic(), 0
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), timeout=limits.idle_timeout_s)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise UploadTimeout(f"no data for {limits.idle_timeout_s:g} s; upload abandoned") from None
        received += len(chunk)
        elapsed = time.monotonic() - started
        if elapsed > limits.grace_s and received / elapsed < limits.min_rate_bytes_s:
            raise UploadTimeout(f"the upload is slower than {limits.min_rate_bytes_s / 1024:g} KiB/s")
        yield chunk


def _parser(content_type: str, receiver: _Receiver) -> MultipartParser:
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary", b"")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidRequest(f"expected a multipart/form-data body with a '{FILE_FIELD}' field")
    if len(boundary) > MAX_BOUNDARY_BYTES:
        raise MalformedUpload(f"the multipart boundary is longer than {MAX_BOUNDARY_BYTES} bytes")
    callbacks = {event: getattr(receiver, event) for event in dir(receiver) if event.startswith("on_")}
    try:
        return MultipartParser(boundary, callbacks)  # type: ignore[arg-type]  # a TypedDict of these names
    except (FormParserError, ValueError) as error:
        raise MalformedUpload(f"unusable multipart boundary ({error.__class__.__name__})") from error


@asynccontextmanager
async def receive_upload(
    request: Request, max_bytes: int, upload_dir: Path | None = None, limits: ReadLimits = ReadLimits()
) -> AsyncIterator[Upload]:
    """The received upload; its temporary file is removed on leaving the block, in every case."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + 2 * MAX_TEXT_FIELD_BYTES:
        raise UploadTooLarge(f"the upload exceeds {max_bytes / 2**20:g} MB")
    _parser(request.headers.get("content-type", ""), _Receiver(None, 0))  # 4xx before any file exists

    if upload_dir is not None:
        upload_dir.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=upload_dir)
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as file_handle:
            receiver = _Receiver(file_handle, max_bytes)
            parser = _parser(request.headers.get("content-type", ""), receiver)
            try:
                async for chunk in _chunks(request, limits):
                    parser.write(chunk)
                if parser.state != MultipartState.END:  # finalize() does not check it (python-multipart's TODO)
                    raise MalformedUpload("the multipart body ended before its closing boundary (a cut-off upload)")
                parser.finalize()
            except (FormParserError, ValueError, UnicodeDecodeError) as error:
                raise MalformedUpload(f"malformed multipart body ({error.__class__.__name__})") from error
        if not receiver.file_seen:
            raise InvalidRequest(f"missing form field '{FILE_FIELD}' (a file)")
        if receiver.size == 0:
            raise EmptyUpload("the uploaded file is empty")
        yield Upload(path, receiver.filename, receiver.size, receiver.digest.hexdigest(), receiver.fields)
    finally:
        path.unlink(missing_ok=True)
