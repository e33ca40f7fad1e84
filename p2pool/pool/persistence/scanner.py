# -*- test-case-name: tests.test_persistence -*-
"""
The JSON text of a peers file walked one record at a time.

C{json.loads} of a whole file builds every record's dicts and lists before
the first is checked; with a hundred thousand records they are millions of
objects, which the cyclic garbage collector traverses again and again while
they are alive. Here the top-level object is walked by hand and each element
of the record arrays is parsed on its own (C{JSONDecoder.raw_decode}, the
same C scanner C{json.loads} uses) and handed over at once, so that its JSON
values are freed before the next one is parsed.

The walk accepts exactly the texts C{json.loads} accepts, and a text it
refuses gets the message C{json.loads} gives for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from typing import Any, cast

__all__ = ["DocumentScan", "scan_document", "scan_head"]

_DECODER = json.JSONDecoder()
# What JSONDecoder.raw_decode calls (the C scanner), without its Python
# frame: one call per record.
_SCAN_ONCE: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
# JSON's whitespace; the pattern matches everywhere (perhaps nothing).
_WHITESPACE = cast(Callable[[str, int], "re.Match[str]"], re.compile(r"[ \t\n\r]*").match)

#: A comma, a new line and the opening brace of the next record.
_RECORD_SEPARATOR = ",\n{"

#: Takes one element of a record array: its index and its JSON value.
RecordSink = Callable[[int, Any], None]


class _Structure(Exception):
    """
    The walk found text that is not JSON between the values it parses, or
    no value where one is due.
    """


class DocumentScan:
    """
    What L{scan_document} found.

    @ivar is_object: the document is a JSON object.
    @ivar value: the document, when it is not an object (then nothing was
        streamed); else None.
    @ivar members: the top-level members, the last of a repeated name
        winning, except the streamed arrays.
    """

    def __init__(self, is_object: bool, value: Any, members: dict[str, Any]) -> None:
        self.is_object = is_object
        self.value = value
        self.members = members


def _walk_array(text: str, index: int, take: RecordSink) -> int:
    """
    Hand each element of the array opening at C{text[index]} to C{take};
    the index just past its closing bracket.
    """
    scan_once = _SCAN_ONCE
    skip = _WHITESPACE
    index = skip(text, index + 1).end()
    if text.startswith("]", index):
        return index + 1
    position = 0
    while True:
        try:
            value, index = scan_once(text, index)
        except StopIteration:
            # No value where one is due: json.loads says why (after a comma,
            # from Python 3.13, that it is a trailing comma).
            raise _Structure from None
        take(position, value)
        position += 1
        if text.startswith(_RECORD_SEPARATOR, index):
            # What the writer puts between two records.
            index += 2
            continue
        mark = text[index : index + 1]
        if mark not in (",", "]"):
            index = skip(text, index).end()
            mark = text[index : index + 1]
        if mark == ",":
            index = skip(text, index + 1).end()
        elif mark == "]":
            return index + 1
        else:
            raise _Structure


def _walk_object(
    text: str, index: int, streamed: Collection[str], section: Callable[[str, dict[str, Any]], RecordSink]
) -> tuple[dict[str, Any], int]:
    raw_decode = _DECODER.raw_decode
    skip = _WHITESPACE
    members: dict[str, Any] = {}
    index = skip(text, index + 1).end()
    if text.startswith("}", index):
        return members, index + 1
    while True:
        if not text.startswith('"', index):
            raise _Structure
        name, index = raw_decode(text, index)
        index = skip(text, index).end()
        if not text.startswith(":", index):
            raise _Structure
        index = skip(text, index + 1).end()
        if name in streamed:
            # A repeated member replaces the earlier one, as in json.loads:
            # the section starts afresh.
            take = section(name, members)
            members.pop(name, None)
            if text.startswith("[", index):
                index = _walk_array(text, index, take)
            else:
                members[name], index = raw_decode(text, index)
        else:
            members[name], index = raw_decode(text, index)
        index = skip(text, index).end()
        mark = text[index : index + 1]
        if mark == ",":
            index = skip(text, index + 1).end()
        elif mark == "}":
            return members, index + 1
        else:
            raise _Structure


def scan_document(
    text: str, streamed: Collection[str], section: Callable[[str, dict[str, Any]], RecordSink]
) -> DocumentScan:
    """
    Walk the JSON document C{text}. For each top-level member whose name is
    in C{streamed}, C{section(name, members_so_far)} is called, and when its
    value is an array each element is handed to the function it returns
    instead of being kept.

    @raise ValueError: C{text} is not JSON (C{json.JSONDecodeError}, with
        the message C{json.loads} gives), or nests too deeply
        (C{RecursionError}).
    """
    index = _WHITESPACE(text, 0).end()
    is_object = text.startswith("{", index)
    try:
        if is_object:
            members, index = _walk_object(text, index, streamed, section)
            value = None
        else:
            members = {}
            value, index = _DECODER.raw_decode(text, index)
        if _WHITESPACE(text, index).end() != len(text):
            raise _Structure
    except _Structure:
        # Between the values the walk parses itself; json.loads says what
        # is wrong (its words vary between Python versions).
        json.loads(text)
        raise json.JSONDecodeError("Expecting ',' delimiter", text, index) from None
    return DocumentScan(is_object, value, members)


class _HeadEnd(Exception):
    """
    The walk of the head reached the first streamed member.
    """


def scan_head(text: str, streamed: Collection[str]) -> dict[str, Any] | None:
    """
    The top-level members of the JSON object C{text} that come before the
    first member named in C{streamed}, parsed; all of them when there is
    no such member. None when C{text} is not an object.

    Only the members read are checked: what follows them is not (see
    L{scan_document} for the whole document).

    @raise ValueError: the text before that point is not JSON (perhaps it
        is cut short), or nests too deeply (C{RecursionError}).
    """
    index = _WHITESPACE(text, 0).end()
    if not text.startswith("{", index):
        return None
    head: dict[str, Any] = {}

    def section(name: str, members: dict[str, Any]) -> RecordSink:
        head.update(members)
        raise _HeadEnd

    try:
        members, _ = _walk_object(text, index, streamed, section)
    except _HeadEnd:
        return head
    except _Structure:
        raise ValueError("not a JSON object") from None
    return members
