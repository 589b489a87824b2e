"""A Dockerfile read as its instructions: continuation lines joined, comments dropped, ARG
defaults substituted into FROM (enough to check what an image would be built from)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, USER, ...
    arguments: str
    stage: int  # index of the FROM this instruction belongs to; -1 before the first


def instructions(path: Path) -> list[Instruction]:
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    result: list[Instruction] = []
    stage = -1
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        result.append(Instruction(keyword, " ".join(arguments.split()), stage))
    return result


def global_args(parsed: list[Instruction]) -> dict[str, str]:
    """ARGs declared before the first FROM, with their defaults (usable in FROM lines)."""
    values: dict[str, str] = {}
    for instruction in parsed:
        if instruction.stage >= 0:
            break
        if instruction.keyword == "ARG":
            name, _, default = instruction.arguments.partition("=")
            values[name] = default
    return values


def base_images(parsed: list[Instruction]) -> list[tuple[str, str]]:
    """(image as written after ARG substitution, stage name) of every FROM."""
    args = global_args(parsed)
    result = []
    for instruction in parsed:
        if instruction.keyword != "FROM":
            continue
        words = instruction.arguments.split()
        image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], words[0])
        name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
        result.append((image, name))
    return result


def env_names(parsed: list[Instruction]) -> set[str]:
    """Names set by ENV (key=value form, several per line) and declared by ARG."""
    names: set[str] = set()
    for instruction in parsed:
        if instruction.keyword == "ENV":
            names.update(re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", instruction.arguments))
        elif instruction.keyword == "ARG":
            names.add(instruction.arguments.partition("=")[0])
    return names
