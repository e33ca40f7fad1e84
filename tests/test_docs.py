# -*- test-case-name: tests.test_docs -*-
"""
Every fenced block of C{README.md} and C{docs/*.md}, exercised.

How a block is treated depends on its language tag, which every block must
have, and on an optional marker: an HTML comment on the line before the
block (blank lines allowed between). A block may be indented (in a list
item).

  - C{text}: output, diagrams, file listings. Not run.
  - C{yaml}: another program's configuration (an orchestrator's probes,
    a scraper's targets). Not run.
  - C{json}: parsed.
  - C{toml}: parsed; a configuration (C{[p2p]}, C{[admin]}) is built with
    C{config_from_mapping}, so every key and value is valid.
  - C{python}: compiled. A block whose first line is a comment naming a file
    (C{# myapp/gossip.py}, C{# greeter.tac}) is a file of the document's
    I{project} (below); any other block is executed, in the project.
  - C{sh}: each command (lines; C{&&} chains; C{|} pipelines; leading
    C{VAR=value} assignments apply to it) is run or checked by the handler
    of its program: C{twistd} (options parsed exactly as twistd parses
    them, building the node's configuration; C{-y FILE} loads the
    application; C{--help}, C{--version} and C{--dump-config} must print
    the options, the versions, and a configuration that C{--config} reads
    back into the one the same options give), C{p2pool} (run for real:
    C{identity}, C{config show} (checked as C{--dump-config}) and
    C{--version} in the project, admin commands against a node on an
    in-memory network through its admin API), C{curl} (the route is
    requested from that admin API; C{/health/} routes without the token),
    C{jq} (run on the previous command's output when installed), C{trial}
    (run for real in the project), C{python -m twisted.trial tests} (must
    be what C{.ci/run} runs), and the environment set-up C{.ci/run} performs
    for real (C{python3 -m venv}, C{pip install} of this project and its
    extras, C{. .venv/bin/activate}, C{mkdir}, C{cd}). Any other program
    fails the test. Commands an operator runs on the systemd host of
    C{contrib/systemd} are marked C{run-with: service-host} (see
    L{ServiceHost}).

Markers:

  - C{<!-- not-run: REASON -->}: the block is not run; the reason is
    required.
  - C{<!-- run-by: tests.module.Class.test_method -->}: another test runs
    the block; that test must exist and its module must name the document.
  - C{<!-- run-with: FIXTURE -->}: a python block is executed with the
    names FIXTURE provides (see L{FIXTURES}); an sh block is run by
    FIXTURE's runner instead of the handlers above.

The I{project} of a document is a fresh directory holding a copy of the
repository's C{tac/} and every file block of the document; commands and
snippets run there, with the repository on C{sys.path} (as if p2pool were
installed). C{/path/to/p2pool} in a command stands for the repository.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
from treq.testing import StubTreq
from twisted.application.service import IService, IServiceCollection, loadApplication
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import globalLogPublisher
from twisted.python import usage
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

import p2pool.cli.commands as cli
from p2pool import __version__
from p2pool.admin import AdminService
from p2pool.config import AdminConfig, LogConfig, config_from_mapping, config_to_toml, load_config
from p2pool.core.addressing import Point
from p2pool.daemon.logs import node_log_observer
from p2pool.errors import Timeout
from p2pool.testing.network import MemoryNetwork
from tests.adminhelpers import settle
from tests.helpers import async_test

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
LANGUAGES = ("python", "sh", "toml", "json", "text", "yaml")
#: A block's first line naming the file it is (``# myapp/gossip.py``).
FILE_NAME = re.compile(r"^# ([\w./-]+\.(?:py|tac|toml))\n")
#: A fenced block, at the start of a line or indented (inside a list item):
#: its indentation, language and body.
_FENCE = re.compile(r"^([ \t]*)```([^\n`]*)\n(.*?)^\1```[ \t]*$", re.M | re.S)
_MARKER = re.compile(r"<!--\s*(not-run|run-by|run-with):\s*(.*?)\s*-->\s*\Z", re.S)


@attrs.frozen
class Block:
    """
    One fenced block of a document.
    """

    document: str
    line: int
    language: str
    body: str
    marker: tuple[str, str] | None

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"

    @property
    def file_name(self) -> str | None:
        match = FILE_NAME.match(self.body) if self.language in ("python", "toml") else None
        return match.group(1) if match else None


def blocks(document: str) -> list[Block]:
    """
    The fenced blocks of C{document}, with their markers.
    """
    return parse_blocks(document, (ROOT / document).read_text(encoding="utf-8"))


def parse_blocks(document: str, text: str) -> list[Block]:
    """
    The fenced blocks of C{text}, the content of C{document}, with their
    markers; an indented block's lines lose its fence's indentation.
    """
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip()
        marker = _MARKER.search(before[-400:])
        indent = match.group(1)
        body = "".join(
            line[len(indent) :] if line.startswith(indent) else line
            for line in match.group(3).splitlines(keepends=True)
        )
        found.append(
            Block(
                document=document,
                line=text.count("\n", 0, match.start()) + 1,
                language=match.group(2).strip(),
                body=body,
                marker=(marker.group(1), marker.group(2)) if marker else None,
            )
        )
    return found


# -- sh commands --------------------------------------------------------------------------


@attrs.frozen
class Command:
    """
    One simple command of an sh block: its environment assignments and
    arguments.
    """

    env: dict[str, str]
    argv: list[str]

    @property
    def program(self) -> str:
        return os.path.basename(self.argv[0])


def commands(body: str, env: dict[str, str]) -> list[list[Command]]:
    """
    The pipelines of an sh block, in order, each a list of commands; words
    are split as sh splits them, and C{$VAR} is expanded from C{env} (in
    any word: the blocks quote no literal C{$}).
    """
    pipelines: list[list[Command]] = []
    for line in body.replace("\\\n", " ").splitlines():
        for chain in _split(_words(line), "&&"):
            pipeline = []
            for simple in _split(chain, "|"):
                assignments: dict[str, str] = {}
                while simple and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", simple[0]):
                    name, _, value = simple.pop(0).partition("=")
                    assignments[name] = value
                argv = [re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), ""), word) for word in simple]
                pipeline.append(Command(assignments, argv))
            if pipeline:
                pipelines.append(pipeline)
    return pipelines


def _words(line: str) -> list[str]:
    """
    The words of one line, without its comment: as in sh, a C{#} starts a
    comment only at the start of a word (C{host:port#peer_id} is one word).
    """
    lexer = shlex.shlex(line, posix=True, punctuation_chars="|&")
    lexer.whitespace_split = True
    lexer.commenters = ""
    words = []
    for word in lexer:
        if word.startswith("#") and not _quoted_at(line, word):
            break
        words.append(word)
    return words


def _quoted_at(line: str, word: str) -> bool:
    """
    Whether C{word} appears in C{line} only inside quotes.
    """
    return f"'{word}" in line or f'"{word}' in line


def _split(words: list[str], separator: str) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for word in words:
        if word == separator:
            parts.append([])
        else:
            parts[-1].append(word)
    return [p for p in parts if p]


def is_admin_command(argv: list[str]) -> bool:
    """
    Whether the C{p2pool} command line C{argv} talks to a node's admin
    API (as opposed to C{identity}, C{config}, C{--version}, ...).
    """
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            args = cli.parse_arguments(argv)
        except SystemExit:
            return False
    return getattr(args, "admin_handler", None) is not None


# -- the admin API of an in-memory node ----------------------------------------------------

#: The token of the in-memory admin API; commands get it from $TOKEN or
#: $P2POOL_ADMIN_TOKEN.
ADMIN_TOKEN = "docs-test-token-0123456789"


class MemoryNode:
    """
    Pools on an in-memory network (seed 1): the node whose admin API the
    commands talk to at 127.0.0.1 (its peer port 127.0.0.1:9732), and
    nodes at 127.0.0.2 to .4 listening on port 9732, so that a command
    naming them reaches a node (their peer ids are C{network.identity(ip)}).
    """

    def __init__(self) -> None:
        self.network = MemoryNetwork(seed=1)
        settings: dict[str, Any] = {"maintenance_idle_time": None}
        self.pool = self.network.add_pool("127.0.0.1", **settings)
        self.others = {ip: self.network.add_pool(ip, **settings) for ip in ("127.0.0.2", "127.0.0.3", "127.0.0.4")}
        self.admin = AdminService(
            self.pool, AdminConfig(listen=None, token=ADMIN_TOKEN), reactor=self.network.reactor("127.0.0.1")
        )
        self.admin.startService()
        self.stub = StubTreq(self.admin.resource)

    def settle(self, d: Deferred[Any], seconds: float = 20.0) -> list[Any]:
        """
        Run the network until C{d} fires; its outcome, as a one-item list
        (empty if it did not fire within C{seconds} of simulated time).
        """
        return settle(self.network, self.stub, d, seconds)

    def stop(self) -> None:
        if self.admin.running:
            self.admin.stopService()
        self.stub.flush()
        self.network.stop()


# -- fixtures of python blocks ---------------------------------------------------------------


class _GarbageSender(Protocol):
    """
    Writes bytes that are not TLS.
    """

    def connectionMade(self) -> None:
        self.transport.write(b"GET / HTTP/1.0\r\n\r\n")  # type: ignore[union-attr,call-arg,misc]


def _memory_test(test: TestCase) -> dict[str, Any]:
    """
    Inside a test on an in-memory network: C{self} is a trial test case,
    C{network} a L{MemoryNetwork} with pools C{a} (also C{pool}) at
    10.0.0.1 and C{b} at 10.0.0.2; C{MyGarbageSender} a protocol writing
    garbage; C{Point}, C{Timeout}, C{Factory}, C{Protocol} imported.
    """
    network = MemoryNetwork(seed=1)
    test.addCleanup(network.stop)
    a = network.add_pool("10.0.0.1", maintenance_idle_time=None)
    b = network.add_pool("10.0.0.2", maintenance_idle_time=None)
    case = SynchronousTestCase()
    return dict(
        self=case,
        network=network,
        a=a,
        pool=a,
        b=b,
        MyGarbageSender=_GarbageSender,
        Point=Point,
        Timeout=Timeout,
        Factory=Factory,
        Protocol=Protocol,
    )


def _admin_embedding(test: TestCase) -> dict[str, Any]:
    """
    C{pool}, a pool on an in-memory network, and C{application}, a Twisted
    application that is not started.
    """
    from twisted.application.service import Application

    network = MemoryNetwork(seed=1)
    test.addCleanup(network.stop)
    return dict(pool=network.add_pool("10.0.0.1", maintenance_idle_time=None), application=Application("docs"))


#: Names given to python blocks marked C{run-with: NAME}.
FIXTURES: dict[str, Callable[[TestCase], dict[str, Any]]] = {
    "memory-test": _memory_test,
    "admin-embedding": _admin_embedding,
}


# -- the tests --------------------------------------------------------------------------------


class BlockParsingTests(SynchronousTestCase):
    """
    The extraction this module relies on.
    """

    def test_commands(self) -> None:
        parsed = commands(
            "A=1 B=2 twistd -n p2pool --peer 1.2.3.4:9732#idX   # a comment\n"
            "p2pool --token \"$T\" peers --json | jq '.[] | .[0]' && cd x\n",
            {"T": "secret"},
        )
        self.assertEqual(
            parsed,
            [
                [Command({"A": "1", "B": "2"}, ["twistd", "-n", "p2pool", "--peer", "1.2.3.4:9732#idX"])],
                [Command({}, ["p2pool", "--token", "secret", "peers", "--json"]), Command({}, ["jq", ".[] | .[0]"])],
                [Command({}, ["cd", "x"])],
            ],
        )

    def test_blocks(self) -> None:
        """
        Blocks are found at the start of a line and indented in a list
        item, with the marker before them.
        """
        text = (
            "Intro.\n\n<!-- not-run: needs root -->\n```sh\nsystemctl restart p2pool\n```\n\n"
            "1. Then:\n\n   ```sh\n   p2pool status\n     p2pool peers\n   ```\n"
        )
        self.assertEqual(
            parse_blocks("X.md", text),
            [
                Block("X.md", 4, "sh", "systemctl restart p2pool\n", ("not-run", "needs root")),
                Block("X.md", 10, "sh", "p2pool status\n  p2pool peers\n", None),
            ],
        )

    def test_every_block_is_tagged(self) -> None:
        """
        Every block of every document has a language this module handles.
        """
        for document in DOCUMENTS:
            for block in blocks(document):
                self.assertIn(block.language, LANGUAGES, f"{block.where}: tag the block with one of {LANGUAGES}")


class DocumentTests(TestCase):
    """
    One test per document: every block of it, handled as the module
    docstring says.
    """

    timeout = 120

    def setUp(self) -> None:
        #: What could not be run for want of a tool (the test then skips,
        #: saying so, after checking everything else).
        self.missing_tools: list[str] = []
        self.environ = dict(os.environ)
        self.cwd = os.getcwd()
        self.path = list(sys.path)
        self.projects: list[Path] = []
        self.addCleanup(self._restore)

    def _restore(self) -> None:
        os.chdir(self.cwd)
        os.environ.clear()
        os.environ.update(self.environ)
        sys.path[:] = self.path
        # Forget the projects' own modules (myapp, mygossip, ...).
        for name, module in list(sys.modules.items()):
            path = getattr(module, "__file__", None) or ""
            if any(path.startswith(str(project)) for project in self.projects):
                del sys.modules[name]

    # -- the project ---------------------------------------------------------------------

    def project(self, document: str, found: list[Block]) -> Path:
        """
        A fresh directory with a copy of C{tac/} and the document's files.
        """
        directory = Path(self.mktemp()).resolve()
        directory.mkdir(parents=True)
        self.projects.append(directory)
        shutil.copytree(ROOT / "tac", directory / "tac")
        for block in found:
            name = block.file_name
            if name is not None:
                target = directory / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.body, encoding="utf-8")
        return directory

    @contextlib.contextmanager
    def inside(self, project: Path, env: dict[str, str] | None = None) -> Iterator[None]:
        """
        Run with C{project} as working directory and first on C{sys.path},
        and C{env} in the environment.
        """
        saved = dict(os.environ)
        os.chdir(project)
        sys.path.insert(0, str(project))
        os.environ.update(env or {})
        try:
            yield
        finally:
            os.chdir(self.cwd)
            sys.path.remove(str(project))
            os.environ.clear()
            os.environ.update(saved)

    # -- one document --------------------------------------------------------------------

    async def check_document(self, document: str, minimum: int) -> None:
        """
        Handle every block of C{document}; at least C{minimum} must be
        run or checked (not text, not not-run).
        """
        found = blocks(document)
        project = self.project(document, found)
        exercised = 0
        for block in found:
            self.assertIn(block.language, LANGUAGES, f"{block.where}: untagged or unknown language")
            if block.language in ("text", "yaml"):
                continue
            kind, value = block.marker or ("", "")
            if kind == "not-run":
                self.assertTrue(value, f"{block.where}: not-run needs a reason")
                continue
            if kind == "run-by":
                self.check_run_by(block, value)
            elif block.language == "json":
                json.loads(block.body)
            elif block.language == "toml":
                self.check_toml(block)
            elif block.language == "python":
                await self.check_python(block, project)
            else:
                await self.check_sh(block, project)
            exercised += 1
        self.assertGreaterEqual(exercised, minimum, f"{document}: fewer blocks exercised than expected")
        if self.missing_tools:
            raise SkipTest("; ".join(self.missing_tools))

    def check_run_by(self, block: Block, name: str) -> None:
        """
        The test named by a run-by marker exists, and its module names the
        document.
        """
        module_name, class_name, method = name.rsplit(".", 2)
        module = __import__(module_name, fromlist=["_"])
        self.assertTrue(hasattr(getattr(module, class_name, None), method), f"{block.where}: no test {name}")
        source = Path(module.__file__).read_text(encoding="utf-8")  # type: ignore[arg-type]
        self.assertIn(
            os.path.basename(block.document), source, f"{block.where}: {module_name} does not name the document"
        )

    def check_toml(self, block: Block) -> None:
        data = tomllib.loads(block.body)
        if {"p2p", "admin"} & set(data):
            config_from_mapping(data, source=block.where)

    async def check_python(self, block: Block, project: Path) -> None:
        code = compile(block.body, block.where, "exec")
        if block.file_name is not None:
            return  # a file of the project, run by the document's commands
        kind, fixture = block.marker or ("", "")
        namespace: dict[str, Any] = {"__name__": "__docs__"}
        if kind == "run-with":
            self.assertIn(fixture, FIXTURES, f"{block.where}: unknown fixture {fixture}")
            namespace.update(FIXTURES[fixture](self))
        out = io.StringIO()
        with self.inside(project), contextlib.redirect_stdout(out):
            exec(code, namespace)
        for value in namespace.values():
            if isinstance(value, MemoryNetwork):
                await value.stop()

    # -- sh ----------------------------------------------------------------------------------

    async def check_sh(self, block: Block, project: Path) -> None:
        kind, runner = block.marker or ("", "")
        if kind == "run-with":
            self.assertIn(runner, RUNNERS, f"{block.where}: unknown runner {runner}")
            await RUNNERS[runner](self, block, project)
            return
        await self.run_commands(block, project)

    async def run_commands(self, block: Block, project: Path, host: ServiceHost | None = None) -> None:
        """
        Run or check every command of an sh block with the handler of its
        program; on a service C{host}, with its paths and programs.
        """
        node: MemoryNode | None = None
        env = {"TOKEN": ADMIN_TOKEN, **(host.env if host else {})}
        try:
            for pipeline in commands(block.body, env):
                output: str | None = None
                for command in pipeline:
                    argv = [a.replace("/path/to/p2pool", str(ROOT)) for a in command.argv]
                    if host is not None:
                        argv = [host.path(a) for a in argv]
                    command = Command(command.env, argv)
                    where = f"{block.where}: {shlex.join(command.argv)}"
                    program = command.program
                    if host is not None and program in host.programs:
                        output = await host.run(command, where)
                    elif program == "twistd":
                        output = self.run_twistd(command, project, where)
                    elif program == "p2pool" and not is_admin_command(command.argv[1:]):
                        output = self.run_local(command, project, where)
                    elif program in ("p2pool", "curl"):
                        if node is None:
                            node = MemoryNode()
                        output = await self.run_admin(node, command, where)
                    elif program == "jq":
                        output = self.run_jq(command, output, where)
                        if host is not None and output is not None:
                            # The journal holds what the filter looks for.
                            self.assertTrue(output.split(), where)
                            self.assertNotIn("null", output.split(), where)
                    elif program == "trial":
                        await self.run_trial(block, command, project, where)
                    elif program in ("python", "python3") and "twisted.trial" in command.argv:
                        self.check_ci(command, where)
                    else:
                        self.check_setup(command, where)
        finally:
            if node is not None:
                node.stop()

    def run_twistd(self, command: Command, project: Path, where: str) -> str:
        """
        Parse the command line as twistd does (the p2pool plugin builds
        the node's configuration); load the application of C{-y FILE}. An
        option that prints and exits (C{--help}, C{--version},
        C{--dump-config}) must print what it promises. The output.
        """
        options = ServerOptions()
        out = io.StringIO()
        with self.inside(project, command.env), contextlib.redirect_stdout(out):
            try:
                options.parseOptions(command.argv[1:])
            except SystemExit as e:
                self.assertEqual(e.code, 0, f"{where}: {out.getvalue()}")
                self.check_printed(command, out.getvalue(), project, where)
                return out.getvalue()
            except usage.UsageError as e:
                self.fail(f"{where}: {e}")
            if options.subCommand is not None:
                self.assertEqual(options.subCommand, "p2pool", where)
                self.assertIsNotNone(options.subOptions.config, where)
            elif options["python"]:
                application = loadApplication(options["python"], "python")
                services = list(IServiceCollection(IService(application)))  # type: ignore[call-arg]
                self.assertTrue(services, where)
                for service in services:
                    # A node locks its data directory when it is made; this
                    # one never runs, and another block may load it again.
                    lock = getattr(service, "lock", None)
                    if lock is not None:
                        lock.release()
            else:
                self.fail(f"{where}: neither a plugin nor -y FILE")
        return out.getvalue()

    def check_printed(self, command: Command, printed: str, project: Path, where: str) -> None:
        """
        What a C{twistd -n p2pool} or C{p2pool} command that prints and
        exits printed: the versions for C{--version}, the options for
        C{--help}, for C{--dump-config} and C{p2pool config show} the
        configuration that the same options give the node, as a file that
        C{--config} reads back into that configuration.
        """
        argv = command.argv
        if "--version" in argv:
            self.assertTrue(printed.startswith(f"p2pool {__version__} (Twisted "), f"{where}: {printed!r}")
        elif "--help" in argv or "-h" in argv:
            self.assertIn("--", printed, where)
        elif "--dump-config" in argv or argv[1:3] == ["config", "show"]:
            if "--dump-config" in argv:
                node_options = argv[argv.index("p2pool") + 1 :]
                node_options.remove("--dump-config")
            else:
                node_options = argv[3:]
            self.check_effective_config(printed, node_options, command.env, project, where)
        else:
            self.fail(f"{where}: printed and exited: {printed!r}")

    def check_effective_config(
        self, printed: str, node_options: list[str], env: dict[str, str], project: Path, where: str
    ) -> None:
        """
        C{printed} is the configuration C{twistd -n p2pool NODE_OPTIONS}
        runs with, as a document that C{--config} reads back unchanged.
        """
        options = ServerOptions()
        with self.inside(project, env):
            options.parseOptions(["-n", "p2pool", *node_options])
            expected = config_to_toml(options.subOptions.config)
            written = project / "effective.toml"
            written.write_text(printed, encoding="utf-8")
            self.assertEqual(config_to_toml(load_config(str(written))), expected, where)
            written.unlink()
        self.assertTrue(printed.startswith("# "), f"{where}: no comment saying where the values came from")

    def run_local(self, command: Command, project: Path, where: str) -> str:
        """
        Run a C{p2pool} command that needs no node (C{identity},
        C{config}, C{--version}) for real, in the project; the output.
        """
        out, err = io.StringIO(), io.StringIO()
        with self.inside(project, command.env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main(command.argv[1:])
        self.assertEqual(status, 0, f"{where}: {err.getvalue()}")
        if command.argv[1:2] == ["identity"]:
            self.assertIn("id", out.getvalue(), where)
        else:
            self.check_printed(command, out.getvalue(), project, where)
        return out.getvalue()

    async def run_admin(self, node: MemoryNode, command: Command, where: str) -> str:
        """
        Run a p2pool admin command against the in-memory node (the API's
        address in the command does not matter), or request the route a
        curl command names; the output.
        """
        if command.program == "curl":
            url = next(a for a in command.argv[1:] if not a.startswith("-"))
            path = "/" + re.sub(r"^https?://", "", url).split("/", 1)[1]
            # The health probes are served without the token.
            headers = {} if path.startswith("/health/") else {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            outcome = node.settle(node.stub.request("GET", "http://127.0.0.1:8732" + path, headers=headers))  # type: ignore[attr-defined]
            self.assertTrue(outcome, f"{where}: no reply")
            self.assertEqual(outcome[0].code, 200, where)
            return ""
        out, err = io.StringIO(), io.StringIO()
        os.environ[cli.TOKEN_ENVIRONMENT] = ADMIN_TOKEN
        d = ensureDeferred(cli.admin_main(command.argv[1:], node.stub, out, err))
        follow = "--follow" in command.argv or "-f" in command.argv
        outcome = node.settle(d, seconds=1.0 if follow else 20.0)
        if follow:
            # Streams until interrupted: it must have printed events and
            # still be streaming.
            self.assertEqual(outcome, [], f"{where}: {err.getvalue()}")
            self.assertTrue(out.getvalue(), where)
            d.cancel()
            node.settle(d)
            return out.getvalue()
        self.assertTrue(outcome, f"{where}: no result")
        self.assertEqual(outcome[0], 0, f"{where}: {err.getvalue()}")
        return out.getvalue()

    def run_jq(self, command: Command, output: str | None, where: str) -> str | None:
        """
        Run jq on the previous command's output; its output, or C{None}
        when jq is not installed.
        """
        self.assertIsNotNone(output, f"{where}: jq reads the previous command's output")
        jq = shutil.which("jq")
        if jq is None:
            self.missing_tools.append(f"{where}: jq is not installed")
            return None
        result = subprocess.run([jq, *command.argv[1:]], input=output, capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 0, f"{where}: {result.stderr}")
        return result.stdout

    async def run_trial(self, block: Block, command: Command, project: Path, where: str) -> None:
        """
        Run trial in the project; it must pass, with as many successes as
        the output shown after the block says.
        """
        env = {**os.environ, **command.env, "PYTHONPATH": os.pathsep.join([str(project), str(ROOT)])}
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ["-m", "twisted.trial", *command.argv[1:]], env=env, path=str(project)
        ).addTimeout(90, reactor)
        report = (out + err).decode("utf-8", "replace")
        self.assertEqual(code, 0, f"{where}:\n{report}")
        shown = blocks(block.document)
        after = next((b for b in shown if b.line > block.line and b.language == "text"), None)
        if after is not None and "PASSED" in after.body:
            self.assertIn(re.search(r"PASSED \(successes=\d+\)", after.body).group(0), report, where)  # type: ignore[union-attr]

    def check_ci(self, command: Command, where: str) -> None:
        """
        The test command is exactly what C{.ci/run} runs.
        """
        ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").replace("\\\n", " ")
        ci = " ".join(ci.split())
        self.assertIn(shlex.join(command.argv).replace("'", ""), ci.replace("'", ""), where)

    def check_setup(self, command: Command, where: str) -> None:
        """
        The environment set-up that C{.ci/run} performs for real: a
        virtualenv, installing this project (with extras it has).
        """
        argv = command.argv
        program = command.program
        if program in ("python", "python3"):
            self.assertEqual(argv[1:3], ["-m", "venv"], f"{where}: no handler for this command")
        elif program == "pip":
            self.assertEqual(argv[1], "install", where)
            spec = argv[2]
            match = re.fullmatch(r"(\.|/path/to/(?:new/)?p2pool|" + re.escape(str(ROOT)) + r")(?:\[([\w,]+)\])?", spec)
            self.assertIsNotNone(match, f"{where}: installs something other than this project")
            extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
            for extra in (match.group(2) or "").split(","):  # type: ignore[union-attr]
                if extra:
                    self.assertIn(extra, extras, where)
        elif program == ".":
            self.assertEqual(argv[1:], [".venv/bin/activate"], where)
        elif program in ("mkdir", "cd"):
            self.assertEqual(len(argv), 2, where)
        else:
            self.fail(f"{where}: no handler for {program}")

    # -- the documents -------------------------------------------------------------------

    @async_test
    async def test_readme(self) -> None:
        await self.check_document("README.md", 8)

    @async_test
    async def test_admin(self) -> None:
        await self.check_document("docs/ADMIN.md", 4)

    @async_test
    async def test_architecture(self) -> None:
        await self.check_document("docs/ARCHITECTURE.md", 0)

    @async_test
    async def test_configuration(self) -> None:
        await self.check_document("docs/CONFIGURATION.md", 3)

    @async_test
    async def test_embedding(self) -> None:
        await self.check_document("docs/EMBEDDING.md", 10)

    @async_test
    async def test_peers_file(self) -> None:
        await self.check_document("docs/PEERS_FILE.md", 1)

    @async_test
    async def test_protocol(self) -> None:
        await self.check_document("docs/PROTOCOL.md", 1)

    @async_test
    async def test_reach(self) -> None:
        await self.check_document("docs/REACH.md", 3)

    @async_test
    async def test_testing(self) -> None:
        await self.check_document("docs/TESTING.md", 6)

    @async_test
    async def test_maintenance(self) -> None:
        await self.check_document("docs/MAINTENANCE.md", 0)

    @async_test
    async def test_operations(self) -> None:
        await self.check_document("docs/OPERATIONS.md", 8)

    @async_test
    async def test_pool(self) -> None:
        await self.check_document("docs/POOL.md", 0)

    @async_test
    async def test_security(self) -> None:
        await self.check_document("docs/SECURITY.md", 0)

    def test_every_document_is_checked(self) -> None:
        """
        A new document gets its test here.
        """
        tested = {name[len("test_") :] for name in dir(self) if name.startswith("test_")}
        for document in DOCUMENTS:
            stem = Path(document).stem.lower()
            self.assertIn(stem, tested, f"add a test for {document}")


# -- runners of sh blocks marked run-with --------------------------------------------------------


class _Output(ProcessProtocol):
    """
    Collects a process's output; C{ended} fires when it exits.
    """

    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


async def _run_greeter(test: DocumentTests, block: Block, project: Path) -> None:
    """
    README's greeter: two copies of C{greeter.tac} run by C{twistd} as the
    block says, the second with the two addresses swapped, on loopback
    addresses of their own (127.N.M.2 and .3 instead of 127.0.0.2 and .3);
    each must print the other's greeting, naming the sender.
    """
    pipelines = commands(block.body, {})
    test.assertEqual(len(pipelines), 1, block.where)
    (command,) = pipelines[0]
    test.assertEqual(command.program, "twistd", block.where)
    tac = (project / "greeter.tac").read_text(encoding="utf-8")
    pid = os.getpid()
    net = f"127.{100 + pid % 100}.{(pid // 100) % 250}"
    runner = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = {}
    for name, swap in {"a": {"2": "2", "3": "3"}, "b": {"2": "3", "3": "2"}}.items():
        directory = project / name
        directory.mkdir()
        text = re.sub(r"127\.0\.0\.([23])\b", lambda m, swap=swap: f"{net}.{swap[m.group(1)]}", tac)  # type: ignore[misc]
        (directory / "greeter.tac").write_text(text, encoding="utf-8")
        protocol = _Output()
        argv = [sys.executable, "-c", runner, *command.argv[1:]]
        reactor.spawnProcess(protocol, sys.executable, argv, env=env, path=str(directory))  # type: ignore
        processes[name] = protocol
    greeting = re.compile(rb"(id\w{28}) says: hello from (id\w{28})")
    try:
        for _ in range(600):
            if all(greeting.search(p.output) for p in processes.values()) or any(
                p.ended.called for p in processes.values()
            ):
                break
            await _sleep(0.05)
    finally:
        for p in processes.values():
            if not p.ended.called:
                p.transport.signalProcess("TERM")  # type: ignore[union-attr,call-arg,misc]
        for p in processes.values():
            await p.ended
    senders = set()
    for name, p in processes.items():
        match = greeting.search(p.output)
        test.assertIsNotNone(
            match, f"{block.where}: no greeting from twistd {name}:\n{p.output.decode(errors='replace')}"
        )
        sender, named = match.group(1), match.group(2)  # type: ignore[union-attr]
        test.assertEqual(sender, named, f"{block.where}: the greeting names {named!r}, sent by {sender!r}")
        senders.add(sender)
    test.assertEqual(len(senders), 2, block.where)


async def _sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


class ServiceHost:
    """
    The systemd host of C{docs/OPERATIONS.md}, where an operator runs
    commands as root: its file system is the directory C{host} of the
    document's project (every absolute path of a command is taken inside
    it, but for the repository's), and it has a checkout of the repository
    as working directory (the project, with C{contrib/} copied in), a
    configured node's files (C{/etc/p2pool/node.toml}, a copy of
    C{tac/node.toml}) and the state its first start leaves
    (C{/var/lib/p2pool/identity.json}).

    L{programs} are handled here: C{python3 -m venv DIR} is checked as
    elsewhere and makes C{DIR/bin} (the environment is this one: a
    program's directory does not matter); C{cp}, C{install}, C{ln} and
    C{mkdir} run for real on the host's files; C{$EDITOR FILE} needs the file;
    C{systemctl} and C{journalctl} must name the unit of
    C{contrib/systemd} (C{p2pool}), installed on the host by then, and
    C{systemd-sysusers} a user file installed; they are not run (they need
    root and systemd). C{journalctl} prints what the node's JSON log
    (C{[log] format = "json"}) holds after a connection and a
    disconnection.
    """

    programs = frozenset(
        {"python3", "cp", "install", "ln", "mkdir", "editor", "systemctl", "journalctl", "systemd-sysusers"}
    )
    #: C{$EDITOR} in a command.
    env = {"EDITOR": "editor"}
    unit = "p2pool"

    def __init__(self, test: DocumentTests, project: Path) -> None:
        self.test = test
        self.project = project
        self.root = project / "host"
        if not self.root.exists():
            shutil.copytree(ROOT / "contrib", project / "contrib")
            for directory in ("etc/p2pool", "etc/systemd/system", "etc/sysusers.d", "usr/local/bin", "root"):
                (self.root / directory).mkdir(parents=True)
            shutil.copy(project / "tac" / "node.toml", self.root / "etc" / "p2pool" / "node.toml")
            state = self.root / "var" / "lib" / "p2pool"
            state.mkdir(parents=True, mode=0o700)
            status = _quiet(cli.main, ["identity", "generate", "--data-dir", str(state), "--pow", "0"])
            test.assertEqual(status, 0)

    def path(self, word: str) -> str:
        """
        C{word}, an absolute path taken inside the host.
        """
        if word.startswith("/") and not word.startswith((str(ROOT), "/path/to/")):
            return str(self.root) + word
        return word

    async def run(self, command: Command, where: str) -> str | None:
        """
        Run or check C{command}; its output.
        """
        argv, program = command.argv, command.program
        test = self.test
        if program in ("cp", "install", "ln", "mkdir"):
            result = subprocess.run(argv, cwd=self.project, capture_output=True, text=True, timeout=30)
            test.assertEqual(result.returncode, 0, f"{where}: {result.stderr}")
            return result.stdout
        if program == "python3":
            # The environment is this one; the directory stands for it.
            test.check_setup(command, where)
            Path(argv[-1], "bin").mkdir(parents=True, exist_ok=True)
            return ""
        if program == "editor":
            test.assertTrue(os.path.isfile(argv[1]), f"{where}: no such file")
            return ""
        if program == "systemd-sysusers":
            test.assertTrue(list((self.root / "etc" / "sysusers.d").glob("*.conf")), f"{where}: no user file installed")
            return ""
        if program == "systemctl":
            verb, *units = [a for a in argv[1:] if not a.startswith("-")]
            test.assertIn(verb, ("daemon-reload", "enable", "start", "stop", "restart", "status"), where)
            if verb == "daemon-reload":
                test.assertEqual(units, [], where)
                return ""
            test.assertEqual(units, [self.unit], where)
        else:
            test.assertEqual(argv[argv.index("-u") + 1], self.unit, where)
        installed = self.root / "etc" / "systemd" / "system" / f"{self.unit}.service"
        test.assertTrue(installed.is_file(), f"{where}: the unit is not installed")
        test.assertEqual(installed.read_bytes(), (ROOT / "contrib" / "systemd" / installed.name).read_bytes(), where)
        return self.journal() if program == "journalctl" else ""

    def journal(self) -> str:
        """
        The JSON log of a node that connects to another and disconnects.
        """
        out = io.StringIO()
        observer = node_log_observer(LogConfig(format="json"), out)
        globalLogPublisher.addObserver(observer)
        node = MemoryNode()
        try:
            connected = node.settle(node.pool.connect(Point("127.0.0.2", 9732)))
            self.test.assertTrue(connected, "no connection")
            self.test.assertTrue(node.settle(connected[0].disconnect()), "no disconnection")
        finally:
            globalLogPublisher.removeObserver(observer)
            node.stop()
        return out.getvalue()


def _quiet(function: Callable[[list[str]], int], argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return function(argv)


async def _run_on_service_host(test: DocumentTests, block: Block, project: Path) -> None:
    """
    A block an operator runs on the systemd host (L{ServiceHost}).
    """
    await test.run_commands(block, project, ServiceHost(test, project))


#: Runners of sh blocks marked C{run-with: NAME}.
RUNNERS: dict[str, Callable[[DocumentTests, Block, Path], Any]] = {
    "greeter": _run_greeter,
    "service-host": _run_on_service_host,
}
