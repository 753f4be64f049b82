"""Multipart uploads streamed to a temporary file, with a size cap and a streaming SHA-256.

Starlette's own form parsing would spool the whole upload before any limit could apply; here the
request body is parsed as it arrives (python-multipart's streaming parser), the file part goes
straight to one temporary file while it is hashed, and reading stops at the cap (413). The file
is always deleted when the request is done, whatever happened.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from preprocess_service.errors import EmptyUpload, InvalidRequest, UploadTooLarge

FILE_FIELD = "file"
MAX_TEXT_FIELD_BYTES = 64 * 1024


@dataclass
class Upload:
    path: Path
    filename: str
    size: int
    sha256: str
    fields: dict[str, str] = field(default_factory=dict)


class _Receiver:
    """The parser's callbacks: headers per part, file data to disk, text fields to memory."""

    def __init__(self, file_handle, max_bytes: int) -> None:
        self.file_handle, self.max_bytes = file_handle, max_bytes
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

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

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
            self.filename = Path(options[b"filename"].decode("utf-8", "replace")).name

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._is_file:
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise UploadTooLarge(f"the upload exceeds {self.max_bytes / 2**20:g} MB")
            self.digest.update(chunk)
            self.file_handle.write(chunk)
        elif len(self._text) + len(chunk) <= MAX_TEXT_FIELD_BYTES:
            self._text += chunk
        else:
            raise InvalidRequest(f"form field '{self._name}' is longer than {MAX_TEXT_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        if not self._is_file and self._name:
            self.fields[self._name] = self._text.decode("utf-8", "replace")


@asynccontextmanager
async def receive_upload(request: Request, max_bytes: int, upload_dir: Path | None = None) -> AsyncIterator[Upload]:
    """The received upload; its temporary file is removed on leaving the block, in every case."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise InvalidRequest(f"expected a multipart/form-data body with a '{FILE_FIELD}' field")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + MAX_TEXT_FIELD_BYTES:
        raise UploadTooLarge(f"the upload exceeds {max_bytes / 2**20:g} MB")

    if upload_dir is not None:
        upload_dir.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="upload-", suffix=".bin", dir=upload_dir)
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as file_handle:
            receiver = _Receiver(file_handle, max_bytes)
            callbacks = {event: getattr(receiver, event) for event in dir(receiver) if event.startswith("on_")}
            parser = MultipartParser(options[b"boundary"], callbacks)
            async for chunk in request.stream():
                parser.write(chunk)
            parser.finalize()
        if not receiver.file_seen:
            raise InvalidRequest(f"missing form field '{FILE_FIELD}' (a file)")
        if receiver.size == 0:
            raise EmptyUpload("the uploaded file is empty")
        yield Upload(path, receiver.filename, receiver.size, receiver.digest.hexdigest(), receiver.fields)
    finally:
        path.unlink(missing_ok=True)
