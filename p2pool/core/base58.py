# -*- test-case-name: tests.test_base58 -*-
"""
Base58 and base58check text, in the Bitcoin alphabet that Tezos uses.

Two digits are converted at a time (58 squared is 3364): the peers file
writes and reads every peer id it holds, so the per-digit loop showed up
in its timings.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "ALPHABET",
    "Base58Error",
    "checksum",
    "decode",
    "decode_check",
    "encode",
    "encode_check",
]

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
#: Bytes of the base58check checksum.
CHECKSUM_SIZE = 4

_DIGITS = frozenset(ALPHABET)
_PAIRS = [a + b for a in ALPHABET for b in ALPHABET]
_PAIR_VALUE = {pair: value for value, pair in enumerate(_PAIRS)}
_PAIR_BASE = len(_PAIRS)


class Base58Error(ValueError):
    """
    Text that is not base58 (or base58check); the message says why.
    """


def encode(data: bytes) -> str:
    """
    The base58 text of C{data}: a C{1} for each leading zero byte, then
    the rest as a number in base 58.
    """
    number = int.from_bytes(data, "big")
    pairs = []
    while number:
        number, pair = divmod(number, _PAIR_BASE)
        pairs.append(_PAIRS[pair])
    zeros = len(data) - len(data.lstrip(b"\0"))
    # The top pair may start with a zero digit: it is not part of the number.
    return "1" * zeros + "".join(reversed(pairs)).lstrip("1")


def decode(text: str) -> bytes:
    """
    The bytes of base58 C{text}. Costs time quadratic in the length of
    C{text}: callers bound it.

    @raise Base58Error: C{text} has a character outside the alphabet.
    """
    # A leading "1" is a zero digit: it pads an odd length to pairs.
    padded = "1" + text if len(text) % 2 else text
    number = 0
    try:
        for i in range(0, len(padded), 2):
            number = number * _PAIR_BASE + _PAIR_VALUE[padded[i : i + 2]]
    except KeyError:
        bad = next(c for c in text if c not in _DIGITS)
        raise Base58Error(f"invalid base58 character {bad!r}") from None
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")


def checksum(payload: bytes) -> bytes:
    """
    The base58check checksum of C{payload}: the first four bytes of its
    double SHA-256.
    """
    return hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:CHECKSUM_SIZE]


def encode_check(payload: bytes) -> str:
    """
    The base58check text of C{payload} (C{payload} and its checksum).
    """
    return encode(payload + checksum(payload))


def decode_check(text: str) -> bytes:
    """
    The payload of base58check C{text}.

    @raise Base58Error: C{text} is not base58, or its checksum is wrong.
    """
    decoded = decode(text)
    payload, check = decoded[:-CHECKSUM_SIZE], decoded[-CHECKSUM_SIZE:]
    if len(decoded) < CHECKSUM_SIZE or checksum(payload) != check:
        raise Base58Error("bad checksum")
    return payload
