"""The image in a multipart form upload (``curl -F file=@photo.jpg``), read with the standard library's MIME parser:
the server needs nothing else to accept what browsers and curl send."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser

from clipsearch.errors import UserError


def uploaded_file(content_type: str, body: bytes) -> bytes:
    """The first file in a ``multipart/form-data`` body (a part with a filename, else the first part)."""
    message = BytesParser(policy=policy.HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
                                                         + body)
    if not message.is_multipart():
        raise UserError("the multipart form could not be read")
    parts = [part for part in message.iter_parts() if part.get_content_disposition() == "form-data"]
    chosen = next((part for part in parts if part.get_filename()), parts[0] if parts else None)
    if chosen is None:
        raise UserError("the multipart form holds no file")
    data = chosen.get_payload(decode=True)
    if not isinstance(data, bytes) or not data:
        raise UserError(f"cannot use {chosen.get_filename() or 'the uploaded image'} as a query image: empty file")
    return data
