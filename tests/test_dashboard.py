# -*- test-case-name: tests.test_dashboard -*-
"""
Tests for the dashboard (C{GET /}): the page as served (inlined package
data, Content-Security-Policy), and the page running in headless Chromium
against a real node, checking what its script rendered.
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import os
import re
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from p2pool import __version__
from p2pool.admin import dashboard
from p2pool.admin.json_shapes import rfc3339
from p2pool.admin.traffic import TrafficHistory
from p2pool.cli.commands import _when as cli_time
from tests.adminhelpers import TOKEN, MemoryAdmin, base_url, start_admin
from tests.helpers import async_test, start_node, wait_for

#: Headless Chromium, if installed (Debian's package is "chromium").
CHROMIUM = next(
    (
        path
        for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
        if (path := shutil.which(name))
    ),
    None,
)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Simulated milliseconds the page runs for: a few refreshes.
VIRTUAL_TIME_BUDGET = 5000
#: What each table and list of the page says when it is empty.
EMPTY_TEXTS = {
    "connections": "no connections",
    "points": "no known points",
    "peers": "no known peers",
    "greylist-ips": "no greylisted addresses",
    "greylist-peers": "no greylisted peers",
    "bans-ips": "no banned addresses or ranges",
    "bans-peers": "no banned peers",
}
#: Tables that always have rows (one per state).
NEVER_EMPTY = {"point-table"}
#: A time as the CLI prints it, and the page too.
CLI_TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


class _Elements(html.parser.HTMLParser):
    """
    The text and attributes of every element with an id, and the body's
    attributes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.text: dict[str, str] = {}
        self.attributes: dict[str, dict[str, str | None]] = {}
        #: The tag of every element with an id.
        self.tags: dict[str, str] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.tags[str(attributes["id"])] = tag
        element = attributes.get("id") or (tag if tag == "body" else None)
        if tag in ("meta", "br", "img", "input", "link"):
            if element:
                self.attributes[element] = attributes
            return
        if element:
            self.attributes[element] = attributes
            self.text.setdefault(element, "")
        self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element in self._open:
            if element:
                self.text[element] += data


def parse_dom(page: str) -> _Elements:
    elements = _Elements()
    elements.feed(page)
    return elements


class PageTests(SynchronousTestCase):
    """
    The dashboard page as the node serves it.
    """

    def setUp(self) -> None:
        self.h = MemoryAdmin(self)
        self.result = self.h.request("GET", "/")
        self.page = self.result.body.decode("utf-8")

    def test_served_as_html_with_a_strict_policy(self) -> None:
        self.assertEqual(self.result.code, 200)
        self.assertEqual(self.result.header("content-type"), "text/html; charset=utf-8")
        self.assertEqual(self.result.header("x-frame-options"), "DENY")
        self.assertEqual(self.result.header("referrer-policy"), "no-referrer")
        policy = self.result.header("content-security-policy") or ""
        [script] = re.findall(r"<script>(.*?)</script>", self.page, re.S)
        [style] = re.findall(r"<style>(.*?)</style>", self.page, re.S)
        self.assertIn(f"script-src {_sha256(script)}", policy)
        self.assertIn(f"style-src {_sha256(style)}", policy)
        self.assertIn("default-src 'none'", policy)
        self.assertIn("connect-src 'self'", policy)

    def test_self_contained(self) -> None:
        """
        No external resource and no build step: the package's files, inlined.
        """
        self.assertNotRegex(self.page, r"""(src|href)\s*=\s*["']?(https?:)?//""")
        self.assertNotIn(dashboard.STYLE_MARK, self.page)
        self.assertNotIn(dashboard.SCRIPT_MARK, self.page)
        for name in ("dashboard.css", "dashboard.js"):
            self.assertIn(dashboard._static(name), self.page)

    def test_script_finds_its_elements(self) -> None:
        script = dashboard._static("dashboard.js")
        used = set(re.findall(r"""(?:\$|setText|fillTable|fillList)\("([a-z-]+)\"""", script))
        self.assertGreater(len(used), 15)
        ids = set(parse_dom(self.page).attributes)
        self.assertEqual(used - ids, set())

    def test_node_line(self) -> None:
        """
        The header has a place for the peer id, the network, the listening
        point, the version, the uptime and the start time, which the script
        fills from C{/node}.
        """
        elements = parse_dom(self.page)
        for element in ("peer-id", "network", "listen", "version", "uptime", "started-at"):
            self.assertIn(element, elements.attributes)
        script = dashboard._static("dashboard.js")
        self.assertIn('api("/node")', script)

    def test_every_table_and_list_says_when_empty(self) -> None:
        """
        Every table and list the script fills has a line for when it is
        empty, given to the fill function.
        """
        elements = parse_dom(self.page)
        filled = {name for name, tag in elements.tags.items() if tag in ("table", "ul")}
        self.assertEqual(filled - NEVER_EMPTY, set(EMPTY_TEXTS))
        script = dashboard._static("dashboard.js")
        for text in EMPTY_TEXTS.values():
            self.assertIn(f'"{text}")', script)
        self.assertNotIn("connections-empty", self.page)

    def test_history_drawn_from_the_node(self) -> None:
        """
        The chart draws the history the node keeps, asking only for the
        intervals it has not seen yet; the page has a line for when there
        is none.
        """
        script = dashboard._static("dashboard.js")
        self.assertIn('api("/network/stat/history?after=" + after)', script)
        self.assertEqual(parse_dom(self.page).text["traffic-empty"], "no traffic recorded yet")

    def test_times_as_the_cli_prints_them(self) -> None:
        """
        The script writes times with one function, and never in the
        browser's locale.
        """
        script = dashboard._static("dashboard.js")
        self.assertNotRegex(script, r"toLocale(Date|Time)?String")
        self.assertEqual(len(re.findall(r"function isoTime\(", script)), 1)
        self.assertEqual(len(re.findall(r"toISOString\(", script)), 1)

    def test_template_needs_its_marks(self) -> None:
        self.patch(dashboard, "_static", lambda name: "<html></html>" if name.endswith(".html") else "")
        self.assertRaises(ValueError, dashboard.dashboard_page.__wrapped__)


class _Chromium(ProcessProtocol):
    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


class BrowserTests(TestCase):
    """
    The dashboard in headless Chromium against a real node.
    """

    timeout = 240
    if CHROMIUM is None:
        skip = "Chromium is not installed (Debian: apt-get install chromium chromium-driver)"

    async def render(self, url: str, *flags: str) -> _Elements:
        """
        The DOM of C{url} after its script ran for L{VIRTUAL_TIME_BUDGET}
        simulated milliseconds, with more command-line C{flags}.
        """
        assert CHROMIUM is not None
        profile = tempfile.mkdtemp(prefix="p2pool-chromium-")
        self.addCleanup(shutil.rmtree, profile, True)
        argv = [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            *flags,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={VIRTUAL_TIME_BUDGET}",
            "--dump-dom",
            url,
        ]
        browser = _Chromium()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("http_", "https_", "HTTP_", "HTTPS_"))}
        process = reactor.spawnProcess(browser, CHROMIUM, argv, env)
        killer = reactor.callLater(90, process.signalProcess, "KILL")
        await browser.ended
        if killer.active():
            killer.cancel()
        page = browser.out.decode("utf-8", "replace")
        self.assertIn("<body", page, f"Chromium printed no page; stderr: {browser.err[-2000:]!r}")
        return parse_dom(page)

    @async_test
    async def test_live_dashboard(self) -> None:
        a = await start_node(self, "127.0.0.95", 70)
        b = await start_node(self, "127.0.0.96", 71)
        admin = await start_admin(self, a.pool, "127.0.0.95")
        # A history of 1-second intervals, so that some are recorded before
        # the page opens without waiting for 10-second ones.
        admin.traffic.history = TrafficHistory(reactor.seconds(), *a.pool.bytes_totals(), interval=1.0)
        conn = await a.pool.connect(b.point)
        a.pool.greylist_addr("10.8.8.8")
        a.pool.points.ban_addr("192.0.2.0/24")
        await wait_for(lambda: len(admin.traffic.history) >= 2, what="two intervals of traffic history")
        recorded = len(admin.traffic.history)
        dom = await self.render(base_url(admin) + "/")
        self.assertGreaterEqual(int(dom.attributes["traffic-chart"]["data-intervals"] or 0), recorded)
        self.assertIn("hidden", dom.attributes["traffic-empty"].get("class") or "")
        self.assertRegex(dom.text["traffic-note"], rf"recorded by the node since {CLI_TIME}")
        self.assertEqual(dom.text["network"], a.pool.config.network)
        self.assertEqual(dom.text["listen"], str(a.pool.listening_point))
        self.assertEqual(dom.text["version"], f"p2pool {__version__}")
        self.assertRegex(dom.text["uptime"], r"^\d+ (s|min \d+ s)$")
        assert a.pool.started_at is not None
        self.assertEqual(dom.text["started-at"], cli_time(rfc3339(a.pool.started_at)))
        self.assertIn(cli_time(rfc3339(conn.established_at)), dom.text["connections"])
        self.assertRegex(dom.text["status"], rf"^updated {CLI_TIME}$")
        self.assertIn(f"{b.point}runningno{b.pool.peer_id}now (connected)", dom.text["points"])
        self.assertIn(f"{b.pool.peer_id}runningno", dom.text["peers"])
        self.assertIn("now (connected)", dom.text["peers"])
        self.assertEqual(dom.text["greylist-peers"], EMPTY_TEXTS["greylist-peers"])
        self.assertEqual(dom.text["bans-peers"], EMPTY_TEXTS["bans-peers"])
        self.assertEqual(dom.text["peer-id"], str(a.pool.peer_id))
        self.assertEqual(dom.text["connection-count"], "1")
        self.assertEqual(dom.text["connections-outgoing"], "1")
        self.assertIn(str(b.pool.peer_id), dom.text["connections"])
        self.assertIn("outgoing", dom.text["connections"])
        self.assertEqual(dom.text["point-states"], "1 running")
        self.assertEqual(dom.text["peer-states"], "1 running")
        self.assertIn("10.8.8.8", dom.text["greylist-ips"])
        self.assertEqual(dom.text["bans-ips"], "192.0.2.0/24")
        self.assertEqual(dom.text["bans-ip-count"], "1")
        self.assertTrue(dom.text["status"].startswith("updated"), dom.text["status"])
        self.assertNotIn("error", dom.attributes["status"].get("class") or "")
        self.assertGreaterEqual(int(dom.attributes["body"]["data-updates"] or 0), 2, "the page refreshes itself")

    @async_test
    async def test_dashboard_with_token(self) -> None:
        a = await start_node(self, "127.0.0.97", 72)
        admin = await start_admin(self, a.pool, "127.0.0.97", token=TOKEN)
        dom = await self.render(f"{base_url(admin)}/?access_token={TOKEN}")
        self.assertEqual(dom.text["peer-id"], str(a.pool.peer_id))
        self.assertEqual(dom.text["connection-count"], "0")
        self.assertTrue(dom.text["status"].startswith("updated"), dom.text["status"])
        for element, text in EMPTY_TEXTS.items():
            # A table's text: the header's, then the body's one line.
            lines = [line.strip() for line in dom.text[element].splitlines() if line.strip()]
            self.assertEqual(lines[-1], text, element)
        empty_chart = dom.attributes["traffic-chart"]["data-intervals"] == "0"
        self.assertEqual("hidden" not in (dom.attributes["traffic-empty"].get("class") or ""), empty_chart)

    @async_test
    async def test_dashboard_over_https(self) -> None:
        """
        The HTTPS admin API works in a browser (which offers ALPN h2 and
        http/1.1): the page loads and its API calls succeed.
        """
        from p2pool.admin.service import AdminService
        from p2pool.config import AdminConfig
        from p2pool.core.addressing import Point
        from tests.test_seeds import Pki

        a = await start_node(self, "127.0.0.98", 73)
        cert, key = Pki.create(self.mktemp()).leaf("admin.test")
        admin = AdminService(a.pool, AdminConfig(Point("127.0.0.98", 0), TOKEN, cert, key))
        admin.startService()
        self.addCleanup(lambda: admin.stopService() if admin.running else None)
        await admin.when_listening()
        dom = await self.render(f"https://{admin.address}/?access_token={TOKEN}", "--ignore-certificate-errors")
        self.assertEqual(dom.text["peer-id"], str(a.pool.peer_id))
        self.assertTrue(dom.text["status"].startswith("updated"), dom.text["status"])
