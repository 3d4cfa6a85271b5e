"""Streamed multipart upload: each file goes straight to disk under PSCT_HOME, size-limited as it streams.

Starlette's own form parser would spool the whole body before our code sees it; parsing the stream
ourselves lets an oversize file be refused at its first byte over the limit.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

from python_multipart.multipart import MultipartParser, parse_options_header

from service.errors import InputError
from service.files import fsync_dir

# Multipart framing and headers around two files: a generous allowance over the file bytes.
FRAMING_ALLOWANCE_BYTES = 64 * 1024


class UploadTooLarge(InputError):
    """A part, or the whole body, is over the limit."""


class _Parts:
    """Multipart callbacks writing the wanted fields to `<folder>/<field>.partial`."""

    def __init__(self, folder: Path, fields: set[str], limit_bytes: int) -> None:
        self.folder, self.fields, self.limit = folder, fields, limit_bytes
        self.header_field, self.header_value = bytearray(), bytearray()
        self.headers: dict[str, bytes] = {}
        self.current: str | None = None
        self.handle: BinaryIO | None = None
        self.size = 0
        self.written: dict[str, Path] = {}

    def callbacks(self) -> Any:  # python-multipart's MultipartCallbacks TypedDict
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: self.header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self.header_value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self.headers, self.current, self.size = {}, None, 0

    def _header_end(self) -> None:
        self.headers[bytes(self.header_field).decode("latin-1").lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get("content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name not in self.fields:
            return  # unknown fields are read and dropped
        if name in self.written:
            raise InputError(f"field {name!r} appears twice")
        self.current = name
        self.handle = open(self.folder / f"{name}.partial", "wb")  # noqa: SIM115 - closed in _end

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self.handle is None:
            return
        self.size += end - start
        if self.size > self.limit:
            raise UploadTooLarge(f"field {self.current!r} is over the {self.limit // (1024 * 1024)} MB limit")
        self.handle.write(data[start:end])

    def _end(self) -> None:
        if self.handle is None or self.current is None:
            return
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        self.handle = None
        final = self.folder / f"{self.current}.dcm"
        os.replace(self.folder / f"{self.current}.partial", final)
        self.written[self.current] = final

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


async def receive_files(
    content_type: str | None,
    content_length: str | None,
    body: AsyncIterator[bytes],
    folder: Path,
    fields: set[str],
    limit_bytes: int,
) -> dict[str, Path]:
    """Stream a multipart body into `folder`; returns field -> durable file. Raises InputError."""
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InputError("the body must be multipart/form-data with file fields " + ", ".join(sorted(fields)))
    body_limit = len(fields) * limit_bytes + FRAMING_ALLOWANCE_BYTES
    if content_length and content_length.isdigit() and int(content_length) > body_limit:
        raise UploadTooLarge(f"the body ({int(content_length)} bytes) is over the limit of {body_limit} bytes")
    folder.mkdir(parents=True, exist_ok=True)
    parts = _Parts(folder, fields, limit_bytes)
    parser = MultipartParser(boundary, parts.callbacks())
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > body_limit:
                raise UploadTooLarge(f"the body is over the limit of {body_limit} bytes")
            parser.write(chunk)
        parser.finalize()
    except InputError:
        raise
    except Exception as exc:  # python-multipart raises its own errors for malformed framing
        raise InputError(f"malformed multipart body: {exc}") from None
    finally:
        parts.close()
    missing = sorted(fields - set(parts.written))
    if missing:
        raise InputError(f"missing file field(s): {', '.join(missing)}")
    fsync_dir(folder)
    return parts.written
