"""Strings from uploads made safe to answer and store: control characters out, length bounded.

A video's tags and an upload's file name are whatever its maker wrote: a 30 MiB QuickTime tag came
back in the answer and was stored whole, and escape sequences in a file name reached terminals
through the client. Every such string is cut to a documented length (``MAX_METADATA_CHARS``,
``MAX_FILENAME_CHARS``; SECURITY.md) with its control characters (Unicode category C: C0, C1,
DEL, and format characters such as bidirectional overrides) removed, before it reaches an answer
or the database.
"""

from __future__ import annotations

import unicodedata

MAX_METADATA_CHARS = 256
MAX_FILENAME_CHARS = 255
ELLIPSIS = "…"


def clean_text(value: object, limit: int) -> str | None:
    """``value`` as text, without control or format characters, at most ``limit`` characters (a cut
    string ends in ``…``); None stays None."""
    if value is None:
        return None
    text = str(value)[: limit * 4]  # bound the work before looking at each character
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C" or c == " ")
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS
