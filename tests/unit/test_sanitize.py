"""preprocess_service.sanitize.clean_text: strings from uploads (file names, video tags) made safe.

Escape sequences in a file name reached terminals, a bidi override can disguise ``exe`` as ``mp4``,
and a 30 MiB tag was stored whole: every such string loses its Unicode category C characters and is
cut to its documented limit, with the work bounded whatever the input's size.
"""

from __future__ import annotations

import time

import pytest

from preprocess_service.sanitize import ELLIPSIS, MAX_FILENAME_CHARS, MAX_METADATA_CHARS, clean_text


def test_none_stays_none() -> None:
    assert clean_text(None, 10) is None


def test_plain_text_is_unchanged_spaces_included() -> None:
    assert clean_text("my holiday  video.mp4", 255) == "my holiday  video.mp4"


def test_non_ascii_letters_marks_and_emoji_are_kept() -> None:
    text = "café 日本語 Ünïcödé e\u0301 🎬"
    assert clean_text(text, 255) == text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\x00b\x07c\x1b[31md", "abc[31md"),  # C0, an ANSI escape's ESC
        ("tab\there\nnew\rline", "tabherenewline"),  # C0 whitespace other than the space
        ("a\x7fb", "ab"),  # DEL
        ("a\x85b\x9bc\x9fd", "abcd"),  # C1
        ("clip\u202e4pm.exe", "clip4pm.exe"),  # RIGHT-TO-LEFT OVERRIDE
        ("a\u2066b\u2069c\u200fd", "abcd"),  # bidi isolates, RLM
        ("zero\u200bwidth\ufeff", "zerowidth"),  # format characters
        ("a\ue000b", "ab"),  # private use
        ("a\ud800b", "ab"),  # a lone surrogate (cannot be encoded as UTF-8)
    ],
)
def test_control_and_format_characters_are_removed(raw: str, expected: str) -> None:
    assert clean_text(raw, 255) == expected


def test_text_at_the_limit_is_not_cut() -> None:
    assert clean_text("abcd", 4) == "abcd"


def test_text_over_the_limit_is_cut_to_the_limit_ending_in_an_ellipsis() -> None:
    cleaned = clean_text("abcdef", 4)
    assert cleaned == "abc" + ELLIPSIS
    assert cleaned is not None and len(cleaned) == 4


def test_the_limit_applies_after_control_characters_are_removed() -> None:
    assert clean_text("ab\x00\x00\x00cd", 4) == "abcd"


def test_values_that_are_not_strings_become_text() -> None:
    assert clean_text(12345, 10) == "12345"
    assert clean_text(b"x", 10) == "b'x'"


@pytest.mark.parametrize("limit", [MAX_FILENAME_CHARS, MAX_METADATA_CHARS])
def test_a_huge_value_is_bounded_quickly(limit: int) -> None:
    huge = "a" * 30 * 2**20  # the 30 MiB QuickTime tag
    started = time.perf_counter()
    cleaned = clean_text(huge, limit)
    assert time.perf_counter() - started < 1.0
    assert cleaned == "a" * (limit - 1) + ELLIPSIS


def test_a_huge_run_of_control_characters_gives_no_more_than_the_limit() -> None:
    cleaned = clean_text("\x1b" * 10_000_000 + "visible", 16)
    assert cleaned is not None and len(cleaned) <= 16
    assert "\x1b" not in cleaned
