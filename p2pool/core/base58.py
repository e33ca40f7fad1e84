# -*- test-case-name: tests.test_base58 -*-
"""
Base58 and base58check text, in the Bitcoin alphabet that Tezos uses.

The peers file writes and reads every peer id it holds, so both directions
take few interpreter steps: encoding converts two digits at a time (58
squared is 3364); decoding maps the text to digit values in one
C{bytes.translate} and folds them five at a time (58 to the fifth is below
2**30, one machine word of a Python integer).
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

_sha256 = hashlib.sha256

_DIGITS = frozenset(ALPHABET)
_PAIRS = [a + b for a in ALPHABET for b in ALPHABET]
_PAIR_BASE = len(_PAIRS)
#: The value of each byte as a digit; 255 for a byte outside the alphabet.
_NOT_A_DIGIT = 255
_DIGIT_VALUES = bytes(ALPHABET.find(chr(b)) if chr(b) in _DIGITS else _NOT_A_DIGIT for b in range(256))
_FIVE_DIGITS = 58**5


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
    try:
        digits = text.encode("ascii").translate(_DIGIT_VALUES)
    except UnicodeEncodeError:
        digits = bytes([_NOT_A_DIGIT])
    if _NOT_A_DIGIT in digits:
        bad = next(c for c in text if c not in _DIGITS)
        raise Base58Error(f"invalid base58 character {bad!r}")
    # A leading "1" (digit 0) is a zero byte.
    zeros = len(digits) - len(digits.lstrip(b"\0"))
    # Zero digits in front make whole groups of five: they add nothing.
    digits = bytes(-len(digits) % 5) + digits
    number = 0
    group = iter(digits)
    for a, b, c, d, e in zip(group, group, group, group, group):
        number = number * _FIVE_DIGITS + (((a * 58 + b) * 58 + c) * 58 + d) * 58 + e
    return b"\0" * zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")


def checksum(payload: bytes) -> bytes:
    """
    The base58check checksum of C{payload}: the first four bytes of its
    double SHA-256.
    """
    return _sha256(_sha256(payload).digest()).digest()[:CHECKSUM_SIZE]


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
