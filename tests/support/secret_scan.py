"""A suite-wide scan: no secret the tests use may reach a stored record or a log line.

What is searched (everything the product wrote, nothing the tests wrote themselves):
- every table of every database the suite creates: the two shared test databases after each
  test (before they are emptied), every PostgreSQL database made by
  tests/support/databases.py when it is dropped (or at the end if it never is), the database
  of every `agentkeep serve` process when it stops, and every SQLite file left under the
  run's temporary directory;
- every log line of every in-process application (the suite configures logging as in
  production, JSON at INFO, into a file of the scan's run directory);
- the whole output of every process the suite starts: `agentkeep serve` servers, workers and
  CLI calls (tests/support/server.py and tests/support/processes.py write it to files in the
  run directory), and any other `*.log` file left under the run's temporary directory.
  Throwaway PostgreSQL and Redis servers are not the product and are left out.

What is searched for:
- every credential a test sends or receives over HTTP, recorded by the hooks in
  tests/support/credentials.py: passwords submitted (right or wrong), access and refresh
  tokens, API keys, provider keys, bearer and `X-API-Key` credentials; and the passwords and
  provider keys given to CLI calls and servers; each also in its JSON-escaped spelling;
- every value shaped like a secret the product issues (JWTs, `akr_` refresh tokens, `ak_` API
  keys, `sk-` provider keys), recorded or not.

There are no exemptions by test name. Each process scans what it ran: under pytest-xdist a
worker scans its own tests, databases and logs and hands its findings to the controller, which
fails the session if any process found one. The summary line names what was read, so a scan
that read nothing shows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

# Shapes of the secrets the product issues (docs/auth.md, docs/orgs.md) and of the provider
# keys the tests store (OpenAI's `sk-...`). A match anywhere is a leak, recorded or not.
# Each starts with a literal, which lets the regex engine skip ahead fast; the word boundary
# before a prefix is checked on the (rare) matches instead.
SECRET_PATTERNS = (
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    re.compile(r"akr_[A-Za-z0-9_-]{20,}"),
    re.compile(r"ak_[A-Za-z0-9]{24,}"),
    re.compile(r"sk-[A-Za-z0-9_-]{20,}"),
)
# Shorter or near-constant values ("x", "aaaaaaaa") would match unrelated text.
MIN_SECRET_LENGTH = 8
MIN_DISTINCT_CHARACTERS = 4

IN_PROCESS_LOG = "in-process-apps.log"


def _spellings(value: str) -> set[str]:
    """The ways a value can appear in a log line or a stored row: as is, or JSON-escaped.

    Each spelling costs a pass over every text, so URL-encoded forms are left out: the product
    logs route templates, never raw query strings or form bodies.
    """
    return {value, json.dumps(value)[1:-1]}


def token_shaped(text: str) -> list[str]:
    """The secret-shaped values in `text`, each named by its first characters only."""
    matches = (match for pattern in SECRET_PATTERNS for match in pattern.finditer(text))
    return [f"token-shaped {match[0][:10]}..." for match in matches if _starts_a_word(text, match.start())]


def _starts_a_word(text: str, start: int) -> bool:
    return start == 0 or not (text[start - 1].isalnum() or text[start - 1] == "_")


def shaped_like_a_secret(value: str) -> bool:
    return any(pattern.fullmatch(value) for pattern in SECRET_PATTERNS)


class SecretScan:
    """The secrets a process saw, the places its product output went, and what was found."""

    def __init__(self, run_dir: Path | None = None) -> None:
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix="agentkeep-secret-scan-"))
        self.roots: list[Path] = []  # temporary directories whose *.log and *.db are read too
        self.findings: list[str] = []
        self.read: Counter[str] = Counter()
        self.seconds = 0.0  # spent scanning, to keep the scan's cost in view
        self._needles: dict[str, str] = {}  # spelling -> how the finding names it
        self._values: set[str] = set()
        self._sqlite_files: set[Path] = set()
        self._postgres: dict[str, psycopg.Connection[tuple[object, ...]] | None] = {}

    @property
    def in_process_log(self) -> Path:
        return self.run_dir / IN_PROCESS_LOG

    # --- what to search for ------------------------------------------------------------

    def remember(self, value: object, kind: str) -> None:
        """Search every later scan of this process for `value` (a credential of kind `kind`)."""
        if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
            return
        if len(set(value)) < MIN_DISTINCT_CHARACTERS or shaped_like_a_secret(value):
            return  # the patterns find the shaped ones wherever they are
        self._values.add(value)
        label = f"{kind} {value[:4]!r}... ({len(value)} characters)"
        for spelling in _spellings(value):
            self._needles.setdefault(spelling, label)

    @property
    def remembered(self) -> int:
        return len(self._values)

    def find(self, text: str) -> list[str]:
        found = token_shaped(text)
        found.extend(label for needle, label in self._needles.items() if needle in text)
        return sorted(set(found))

    def check(self, source: str, text: str) -> None:
        self.read["characters"] += len(text)
        leaks = self.find(text)
        if leaks:
            self.findings.append(f"{source}: {', '.join(leaks)}")

    # --- where the product wrote -------------------------------------------------------

    def process_log(self, name: str) -> Path:
        """A new file for the output of one process; read at the end of the run."""
        handle, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log", dir=self.run_dir)
        os.close(handle)
        return Path(path)

    def watch_postgres(self, url: str) -> None:
        self._postgres.setdefault(url, None)

    def check_sqlite(self, path: Path, when: str) -> None:
        text = sqlite_text(path)
        if text is not None:
            self.read["database dumps"] += 1
            self.check(f"SQLite {path.name} {when}", text)

    def check_postgres(self, url: str, when: str, *, last: bool = False) -> None:
        """Dump every table of `url` and search it; `last` closes the connection (before a drop)."""
        connection = self._postgres.pop(url, None) if last else self._postgres.get(url)
        try:
            if connection is None or connection.closed:
                connection = psycopg.connect(_libpq_url(url), autocommit=True, connect_timeout=10)
            if not last:
                self._postgres[url] = connection
            text = postgres_text(connection)
        except psycopg.Error:
            return  # the database is gone (dropped by a test) or its server is stopped
        finally:
            if last and connection is not None:
                connection.close()
        self.read["database dumps"] += 1
        self.check(f"PostgreSQL {make_url(url).database} {when}", text)

    def check_database(self, url: str, when: str, *, last: bool = False) -> None:
        started = time.perf_counter()
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database:
                self.check_sqlite(Path(parsed.database), when)
        else:
            self.check_postgres(url, when, last=last)
        self.seconds += time.perf_counter() - started

    # --- the end of the run ------------------------------------------------------------

    def finish(self) -> None:
        """Read every log and database not read yet; then remove the run directory."""
        started = time.perf_counter()
        for path in sorted(self.run_dir.glob("*.log")):
            self._check_log(path, "in-process" if path.name == IN_PROCESS_LOG else "process")
        for root in self.roots:
            for path in sorted(root.rglob("*.log")):
                self._check_log(path, "process")
            self._sqlite_files.update(root.rglob("*.db"))
        for path in sorted(self._sqlite_files):
            if path.exists():
                self.check_sqlite(path, "at the end")
        for url in list(self._postgres):
            self.check_postgres(url, "at the end", last=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.seconds += time.perf_counter() - started

    def _check_log(self, path: Path, origin: str) -> None:
        text = path.read_text(errors="replace")
        self.read[f"{origin} log lines"] += text.count("\n")
        self.read[f"{origin} logs"] += 1
        name = path.name if path.is_relative_to(self.run_dir) else str(path)
        self.check(f"log {name}", text)


def summarise(read: Counter[str], remembered: int, seconds: float) -> str:
    return (
        f"secret scan: {remembered} recorded credentials and the token shapes, searched in "
        f"{read['in-process log lines']} log lines of in-process apps, "
        f"{read['process log lines']} lines of {read['process logs']} process logs "
        f"and {read['database dumps']} database dumps "
        f"({read['characters'] / 1e6:.1f} MB, {seconds:.1f} s of scanning)"
    )


def _libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def sqlite_text(path: Path) -> str | None:
    """Every row of every table as text, or None when `path` is not a readable database."""
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        names = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        # The names come from the database's own catalogue.
        selects = (connection.execute(f'SELECT * FROM "{name}"') for name in names)  # noqa: S608
        return "\n".join(_rows_text(selects))
    except sqlite3.Error:
        return None
    finally:
        connection.close()


def _rows_text(results: Iterable[Iterable[tuple[object, ...]]]) -> Iterable[str]:
    for rows in results:
        for row in rows:
            yield "\t".join(str(value) for value in row)


def postgres_text(connection: psycopg.Connection[tuple[object, ...]]) -> str:
    """Every row of every table (the product's, procrastinate's, alembic's) as text."""
    tables = connection.execute(
        "SELECT schemaname, tablename FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
    ).fetchall()
    if not tables:
        return ""
    selects = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT t::text FROM {}.{} t").format(sql.Identifier(str(schema)), sql.Identifier(str(name)))
        for schema, name in tables
    )
    row = connection.execute(
        sql.SQL("SELECT string_agg(x, E'\\n') FROM ({}) AS s(x)").format(selects)
    ).fetchone()
    return str(row[0]) if row and row[0] is not None else ""


_current: SecretScan | None = None


def start_scan(run_dir: Path | None = None) -> SecretScan:
    global _current
    _current = SecretScan(run_dir)
    return _current


def current_scan() -> SecretScan | None:
    """The scan of this test process; None outside a test run (benchmarks use the helpers too)."""
    return _current


def scan_database(url: str, when: str, *, last: bool = False) -> None:
    """Search every table of `url` now (before it is emptied or dropped)."""
    if _current is not None:
        _current.check_database(url, when, last=last)


def watch_database(url: str) -> None:
    """Search `url` at the end of the run if it still exists then."""
    if _current is not None and make_url(url).get_backend_name() != "sqlite":
        _current.watch_postgres(url)
