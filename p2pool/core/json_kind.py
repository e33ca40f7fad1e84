# -*- test-case-name: tests.test_timestamps -*-
"""
Names of the kinds of decoded JSON values, for error messages.
"""

from __future__ import annotations

__all__ = ["json_kind"]


def json_kind(value: object) -> str:
    """
    What C{value}, as C{json.loads} returns it, is: C{"null"},
    C{"a boolean"}, C{"a number"}, C{"a string"}, C{"an array"},
    C{"an object"}; otherwise the name of its type.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
