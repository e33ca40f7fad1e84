# -*- test-case-name: tests.test_base58 -*-
"""
Tests for L{p2pool.core.base58}, the project's one base58 (used for peer ids by
L{p2pool.addressing} and, through them, by the peers file).
"""

from __future__ import annotations

import copy
import hashlib
import pickle

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

import p2pool.core.base58 as base58
from p2pool.core.addressing import AddressError, PeerId
from tests.helpers import identity


def _reference_encode(data: bytes) -> str:
    """
    Base58 the textbook way, one digit at a time.
    """
    number = int.from_bytes(data, "big")
    digits = ""
    while number:
        number, digit = divmod(number, 58)
        digits = base58.ALPHABET[digit] + digits
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + digits


class Base58Tests(SynchronousTestCase):
    def test_known_values(self) -> None:
        self.assertEqual(base58.encode(b""), "")
        self.assertEqual(base58.encode(b"\0\0"), "11")
        self.assertEqual(base58.encode(b"\0\x01"), "12")
        self.assertEqual(base58.encode(b"hello world"), "StV1DL6CwTryKyV")
        self.assertEqual(base58.decode("StV1DL6CwTryKyV"), b"hello world")
        self.assertEqual(base58.decode("111z"), b"\0\0\0\x39")

    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=40))
    def test_round_trip_and_reference(self, data: bytes) -> None:
        text = base58.encode(data)
        self.assertEqual(text, _reference_encode(data))
        self.assertEqual(base58.decode(text), data)

    def test_invalid_character_named(self) -> None:
        for text, char in (("0", "'0'"), ("abcO", "'O'"), ("Il", "'I'"), ("2é", "'é'")):
            with self.assertRaises(base58.Base58Error) as caught:
                base58.decode(text)
            self.assertEqual(str(caught.exception), f"invalid base58 character {char}")

    def test_check(self) -> None:
        payload = b"\x99\x67" + bytes(range(16))
        text = base58.encode_check(payload)
        self.assertEqual(base58.decode(text)[-4:], hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4])
        self.assertEqual(base58.decode_check(text), payload)
        flipped = text[:-1] + ("2" if text[-1] != "2" else "3")
        for bad in (flipped, text[:-1], "", "1"):
            with self.assertRaises(base58.Base58Error, msg=repr(bad)) as caught:
                base58.decode_check(bad)
            self.assertEqual(str(caught.exception), "bad checksum")


class PeerIdTextTests(SynchronousTestCase):
    """
    Peer ids are written and read through L{p2pool.core.base58}.
    """

    def test_peer_id_text(self) -> None:
        for raw in (bytes(16), b"\xff" * 16, bytes(range(16)), identity(0).peer_id.raw, identity(1).peer_id.raw):
            peer_id = PeerId(raw)
            text = str(peer_id)
            self.assertEqual(text, base58.encode_check(b"\x99\x67" + raw))
            self.assertEqual(text, _reference_encode(base58.decode(text)))
            self.assertTrue(text.startswith("id") and len(text) == 30, text)
            self.assertEqual(PeerId.parse(text), peer_id)

    def test_bad_peer_ids(self) -> None:
        good = str(PeerId(bytes(15) + b"\x07"))
        flipped = good[:-1] + ("2" if good[-1] != "2" else "3")
        cases = {
            "": "empty peer id",
            "id0OIl": "invalid base58 character '0'",
            flipped: "bad checksum",
            good + "x": "bad checksum",
            good[:-1]: "bad checksum",
            base58.encode_check(b"\x99\x68" + bytes(16)): "not a peer id",
            base58.encode_check(b"\x99\x67" + bytes(15)): "not a peer id",
            "z" * 65: "65 characters, not a peer id",
        }
        for bad, problem in cases.items():
            with self.assertRaises(AddressError, msg=repr(bad)) as caught:
                PeerId.parse(bad)
            self.assertIn(problem, str(caught.exception), repr(bad))


def _reference_decode(text: str) -> bytes:
    """
    Base58 decoding the textbook way, one digit at a time.
    """
    number = 0
    for char in text:
        number = number * 58 + base58.ALPHABET.index(char)
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")


class DecodeFastPathTests(SynchronousTestCase):
    """
    L{base58.decode} maps the text to digits in one step and folds them
    five at a time: the same bytes as one digit at a time, for every
    length and any leading zero digits, and the same refusals.
    """

    @settings(max_examples=500, deadline=None)
    @given(st.text(alphabet=base58.ALPHABET, max_size=64))
    def test_as_one_digit_at_a_time(self, text: str) -> None:
        self.assertEqual(base58.decode(text), _reference_decode(text))

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet=base58.ALPHABET, max_size=12), st.text(min_size=1, max_size=3), st.data())
    def test_first_bad_character_named(self, good: str, extra: str, data: st.DataObject) -> None:
        """
        Any character outside the alphabet (ASCII or not) is refused, and
        the message names the first one.
        """
        position = data.draw(st.integers(0, len(good)))
        text = good[:position] + extra + good[position:]
        bad = [c for c in text if c not in base58.ALPHABET]
        if not bad:
            self.assertEqual(base58.decode(text), _reference_decode(text))
            return
        with self.assertRaises(base58.Base58Error) as caught:
            base58.decode(text)
        self.assertEqual(str(caught.exception), f"invalid base58 character {bad[0]!r}")


class PeerIdTextCacheTests(SynchronousTestCase):
    """
    A L{PeerId} keeps its text once made or parsed: the kept text is the
    one its encoding writes, and takes no part in equality, order or hash.
    """

    @settings(max_examples=200, deadline=None)
    @given(st.binary(min_size=16, max_size=16))
    def test_parsed_text_is_the_encoding(self, raw: bytes) -> None:
        text = base58.encode_check(b"\x99\x67" + raw)
        parsed = PeerId.parse(text)
        fresh = PeerId(raw)
        self.assertEqual(str(parsed), text)
        self.assertEqual(str(fresh), text)
        self.assertEqual(str(fresh), text, "the second time, from the kept text")
        self.assertEqual((parsed, hash(parsed)), (fresh, hash(fresh)))
        self.assertFalse(parsed < fresh or fresh < parsed)

    def test_other_texts_of_the_same_id_are_refused(self) -> None:
        """
        No other text decodes to a peer id's bytes: a leading zero digit
        adds a byte, so parsing refuses it rather than keeping a second
        text for the same id.
        """
        text = str(PeerId(bytes(range(16))))
        for other in ("1" + text, "11" + text):
            with self.assertRaises(AddressError):
                PeerId.parse(other)

    def test_copies_make_their_own_text(self) -> None:
        parsed = PeerId.parse(str(PeerId(b"\x05" * 16)))
        for clone in (copy.copy(parsed), copy.deepcopy(parsed), pickle.loads(pickle.dumps(parsed))):
            self.assertEqual((clone, str(clone), repr(clone)), (parsed, str(parsed), repr(parsed)))
