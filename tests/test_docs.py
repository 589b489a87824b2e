"""The documentation stays true, checked mechanically against the product:

- every setting is in the README table and .env.example;
- every route a doc names (`METHOD /path` in backticks, a curl line in a code block) is
  served by the app, and every bare `/api/...` path it names exists;
- every `agentkeep <command>` a doc names runs with `--help`, and every option written after
  it is one that command takes;
- every file a doc names exists; every audit action is documented.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import pytest
import typer.main
from fastapi.routing import iter_route_contexts
from typer.core import TyperGroup

from agentkeep.app import create_app
from agentkeep.audit.actions import AuditAction
from agentkeep.cli import cli
from agentkeep.config import Settings
from tests.test_cli import run_cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
METHOD = r"(?:GET|POST|PUT|PATCH|DELETE)"
SPAN = re.compile(r"`([^`\n]+)`")
CODE_BLOCK = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
ROUTE_SPAN = re.compile(rf"^({METHOD}(?:\|{METHOD})*) (/\S*)")
BARE_PATH_SPAN = re.compile(r"^/(?:api|auth|health)(?:/\S*)?$")
CURL = re.compile(
    r"\bcurl\b(?P<args>[^\n]*?)\s'?(?:https?://)?(?:localhost|127\.0\.0\.1)(?::\d+)?(?P<path>/[^\s'\"\\]*)"
)
COMMAND = re.compile(r"(?:^|[\s/(])agentkeep((?: [a-z][a-z-]*){1,2})(?P<rest>[^\n`#]*)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z-]*)")
TOP_LEVEL = ("/api", "/auth", "/health", "/metrics")
FILE_SPAN = re.compile(r"^[\w.-]+(?:/[\w.-]+)*\.(?:py|md|toml|lock|ya?ml|sh|example|json|txt)$")


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", readme, flags=re.MULTILINE))
    assert {name.upper() for name in Settings.model_fields} <= documented


def test_every_setting_is_in_env_example() -> None:
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#? ?([A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert {name.upper() for name in Settings.model_fields} <= named


def _spans(text: str) -> Iterator[str]:
    yield from (span.strip() for span in SPAN.findall(text))


def _code_lines(text: str) -> Iterator[str]:
    for block in CODE_BLOCK.findall(text):
        # Shell continuations: one command per logical line.
        yield from block.replace("\\\n", " ").splitlines()


def _template(path: str) -> str:
    """A path with every parameter (`{agent_id}`, `$RUN`) as `{}` and no query string."""
    path = re.sub(r"\{[^}]*\}|\$\{?\w+\}?", "{}", path.split("?", 1)[0])
    return path.rstrip("/.,;:") or "/"


def _alternatives(path: str) -> list[str]:
    """`/api/users/{id}/disable\\|enable` (a table cell's escaped bar) as one path each."""
    head, _, last = path.replace("\\|", "|").rpartition("/")
    return [f"{head}/{choice}" for choice in last.split("|")] if "|" in last else [path]


def documented_routes() -> list[tuple[str, str, str]]:
    """(doc, method or "*", path template) for every route the docs name."""
    found: list[tuple[str, str, str]] = []
    for doc in DOCS:
        text = doc.read_text()
        for span in _spans(text):
            if match := ROUTE_SPAN.match(span):
                for method in match.group(1).split("|"):
                    found += [(doc.name, method, _template(path)) for path in _alternatives(match.group(2))]
            elif BARE_PATH_SPAN.match(span):
                found.append((doc.name, "*", _template(span)))
        for line in _code_lines(text):
            if match := CURL.search(line):
                explicit = re.search(rf"-X\s*({METHOD})", match.group("args") + line)
                method = explicit.group(1) if explicit else ("POST" if re.search(r"\s-d\s", line) else "GET")
                found.append((doc.name, method, _template(match.group("path"))))
    return found


@cache
def served_routes() -> frozenset[tuple[str, str]]:
    app = create_app(Settings(_env_file=None, jwt_secret="docs-test-" + "x1y2z3" * 8))
    served: set[tuple[str, str]] = set()
    for context in iter_route_contexts(app.routes):
        methods = (
            getattr(context, "methods", None) or getattr(context.original_route, "methods", None) or set()
        )
        served.update((method, _template(str(context.path))) for method in set(methods) - {"HEAD", "OPTIONS"})
    assert ("GET", "/health") in served
    return frozenset(served)


def _is_served(method: str, path: str) -> bool:
    def same(served_path: str) -> bool:
        # A path relative to its section (`/members/{user_id}` under `/api/orgs/{org_id}`).
        return served_path == path or (not path.startswith(TOP_LEVEL) and served_path.endswith(path))

    return any(
        same(served_path) and method in ("*", served_method) for served_method, served_path in served_routes()
    )


def test_the_docs_name_routes_and_the_check_reads_them() -> None:
    routes = documented_routes()
    assert ("README.md", "POST", "/auth/register") in routes  # a curl line
    assert ("providers.md", "PATCH", "/api/orgs/{}/providers/{}") in routes  # a table cell
    assert ("README.md", "POST", "/api/users/{}/enable") in routes  # a cell with alternatives
    assert not _is_served("GET", "/api/no-such-thing")


def test_every_route_the_docs_name_is_served() -> None:
    missing = sorted({entry for entry in documented_routes() if not _is_served(entry[1], entry[2])})
    assert missing == []


def documented_commands() -> dict[tuple[str, ...], set[str]]:
    """Each `agentkeep ...` command path the docs name, with the options written after it."""
    root = typer.main.get_group(cli)
    found: dict[tuple[str, ...], set[str]] = {}
    for doc in DOCS:
        text = doc.read_text()
        for chunk in [*_spans(text), *_code_lines(text)]:
            for match in COMMAND.finditer(chunk):
                words = match.group(1).split()
                group = root.commands.get(words[0])
                path = tuple(words[:2]) if isinstance(group, TyperGroup) and len(words) > 1 else (words[0],)
                options = set(OPTION.findall(match.group("rest") if len(path) == len(words) else ""))
                found.setdefault(path, set()).update(options)
    return found


def _help(*command: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*command, "--help", cwd=ROOT, env={"COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"})


def test_the_docs_name_commands_and_the_check_reads_them() -> None:
    commands = documented_commands()
    assert {("serve",), ("audit", "verify"), ("providers", "reencrypt")} <= set(commands)
    assert "--workers" in commands[("serve",)]
    assert _help("no-such-command").returncode != 0


def test_every_command_the_docs_name_runs_and_takes_the_options_they_show() -> None:
    problems = []
    for command, options in sorted(documented_commands().items()):
        result = _help(*command)
        if result.returncode != 0:
            problems.append(f"agentkeep {' '.join(command)}: exit {result.returncode}")
            continue
        problems += [
            f"agentkeep {' '.join(command)} has no {option}"
            for option in sorted(options)
            if option not in result.stdout
        ]
    assert problems == []


def _exists(name: str) -> bool:
    if "/" not in name:  # a module named in its domain's doc (`router.py`)
        return any((ROOT / top).rglob(name) for top in ("src", "tests", "docs", "deploy", "bench"))
    bases: list[Callable[[str], Path]] = [
        lambda n: ROOT / n,
        lambda n: ROOT / "src" / "agentkeep" / n,
        lambda n: ROOT / "src" / n,
    ]
    return any(base(name).exists() for base in bases)


def test_every_file_the_docs_name_exists() -> None:
    missing = sorted(
        {
            (doc.name, span)
            for doc in DOCS
            for span in _spans(doc.read_text())
            if FILE_SPAN.match(span) and not _exists(span)
        }
    )
    assert missing == []


def test_every_audit_action_is_documented() -> None:
    text = (ROOT / "docs" / "audit.md").read_text()
    section = text[text.index("## Actions") :].split("\n## ", 1)[0]
    assert {action.value for action in AuditAction} <= set(SPAN.findall(section))


@pytest.mark.parametrize(
    "claim", ["not mounted", "until organizations exist", "until organisations exist", "API keys will add"]
)
def test_no_doc_still_describes_a_feature_as_missing_that_exists(claim: str) -> None:
    assert [doc.name for doc in DOCS if claim in doc.read_text()] == []
