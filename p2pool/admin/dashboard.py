# -*- test-case-name: tests.test_dashboard -*-
"""
The live dashboard served at C{GET /}: one HTML page built from the package
data in C{p2pool/admin/static/} (C{dashboard.html}, C{dashboard.css},
C{dashboard.js}), with the style sheet and the script inlined so that the
page is a single response (a token given in its URL covers it all).

The page polls the JSON routes of the admin API itself; no build step, no
external resource. A Content-Security-Policy allows only the inlined
script and style (by hash) and requests to the node.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from importlib import resources

import attrs

__all__ = ["DashboardPage", "dashboard_page"]

STYLE_MARK = "/*@STYLE@*/"
SCRIPT_MARK = "/*@SCRIPT@*/"


def _static(name: str) -> str:
    return (resources.files("p2pool.admin") / "static" / name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


@attrs.frozen
class DashboardPage:
    """
    The dashboard as served: the page and its Content-Security-Policy.
    """

    body: bytes
    content_security_policy: str


@functools.cache
def dashboard_page() -> DashboardPage:
    """
    Build the dashboard page from the package data (once per process).

    @raise ValueError: the template lacks its style or script mark.
    """
    template = _static("dashboard.html")
    style, script = _static("dashboard.css"), _static("dashboard.js")
    if STYLE_MARK not in template or SCRIPT_MARK not in template:
        raise ValueError("dashboard.html lacks its style or script mark")
    page = template.replace(STYLE_MARK, style).replace(SCRIPT_MARK, script)
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_csp_hash(script)}",
            f"style-src {_csp_hash(style)}",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return DashboardPage(page.encode("utf-8"), policy)
