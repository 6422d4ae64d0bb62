"""The README and docs/ say only what is true of this tree.

Every shell command in a fenced block is checked without being run for long: ``make`` targets
exist in the Makefile; ``fsapps ...`` lines parse with the real ``fsapps`` argument parser;
``python -m X`` modules exist; pytest lines name test files and test functions that exist;
``fs_cli -x`` and fs_cli transcript lines name switch commands fsapps has; curl URLs are routes
the CTI server registers. Transcripts of the ``fsapps`` command (``$ fsapps ...`` followed by
what it prints) are run and must print exactly that, so a quoted error message cannot go
stale. Every relative link resolves to a file (and its #anchor to a heading), every repository
path quoted in backticks exists, and every CTI URL path quoted (``/api/...``, ``/wallboard``,
``POST /login``) is a route. Long commands (``make demo``, ``make test``) are checked, not run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Programs a page may name that are not fsapps' own: checked for nothing but their name, so a
# new kind of command in a page is a decision, not an accident.
EXTERNAL = {"apt-get", "systemctl", "export", "echo", "jq", "curl", "sudo", "cat", "psql",
            "redis-cli"}
# Where a quoted path may point in the repository.
REPO_DIRS = ("fsapps", "tools", "tests", "conf", "dialplan", "fakefs", "docs", ".ci")
REPO_PATH = re.compile(r"(?<![\w./-])((?:" + "|".join(map(re.escape, REPO_DIRS)) + r")/[\w./*-]*)")
# FreeSWITCH's own conf/ directories, which the install steps name (not this repository's).
FREESWITCH_SIDE = re.compile(r"^conf/(dialplan|directory|sip_profiles)/")
# The CTI server's URL paths as pages quote them.
CTI_PATH = re.compile(r"^/(api/|login\b|wallboard\b|cli\b|mvc/|static/)")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    text: str

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> Iterator[Block]:
    """The fenced code blocks of a page (indented fences included)."""
    lines = page.read_text().split("\n")
    i = 0
    while i < len(lines):
        fence = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        indent, lang, start = fence.group(1), fence.group(2), i + 1
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        yield Block(page, start, lang, "\n".join(body))
        i += 1


def prose(page: Path) -> str:
    """The page without its fenced blocks."""
    return re.sub(r"(?ms)^\s*```.*?^\s*```\s*$", "", page.read_text())


def shell_lines(block: Block) -> Iterator[str]:
    """The commands of a sh block: continuation lines joined, comments dropped."""
    text = block.text.replace("\\\n", " ")
    for line in text.split("\n"):
        line = re.sub(r"\s+#\s.*$", "", line).strip()
        if line and not line.startswith("#"):
            yield line


def segments(line: str) -> list[list[str]]:
    """The simple commands of a line: split at | && || ; and $( ... )."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
    lexer.whitespace_split = True
    words, out = [], []
    for token in lexer:
        if token and set(token) <= set(";&|()"):
            out.append(words)
            words = []
        else:
            words.append(token)
    out.append(words)
    return [[w for w in seg if w != "$"] for seg in out if seg]


def without_assignments(words: list[str]) -> list[str]:
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words = words[1:]
    return words


@cache
def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.M))


@cache
def cti_routes() -> list[re.Pattern[str]]:
    from fsapps.config import load_settings
    from fsapps.server.app import build_app
    from fsapps.server.services import CtiServices

    app = build_app(CtiServices(load_settings(str(ROOT / "conf" / "fsapps.yaml"), environ={})))
    patterns = []
    for resource in app.router.resources():
        path = resource.canonical
        regex = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(path))
        patterns.append(re.compile(regex + ("(/.*)?$" if path == "/static" else "/?$")))
    return patterns


def switch_commands() -> set[str]:
    from fsapps.switch import commands

    return set(commands.COMMANDS)


def route_variants(path: str) -> list[str]:
    """A quoted URL path as concrete paths: placeholders filled, optional parts both ways."""
    path = path.split("?")[0].split("#")[0].rstrip(".,;:")
    path = re.sub(r"<[^>]*>|\{[^}]*\}|\.\.\.", "x", path)
    optional = re.search(r"\[([^\]]*)\]", path)
    if optional:
        return route_variants(path.replace(optional.group(0), "", 1)) + route_variants(
            path.replace(optional.group(0), optional.group(1), 1))
    return [path]


def is_route(path: str) -> bool:
    if path.endswith("/..."):  # a family of routes: "/api/csta/..."
        return any(p.match(path[:-3] + "x") or p.pattern.startswith(re.escape(path[:-3]))
                   for p in cti_routes())
    return all(any(p.match(v) for p in cti_routes()) for v in route_variants(path))


def problems_of_command(words: list[str]) -> list[str]:
    """What is wrong with one simple command of a page (empty: nothing)."""
    words = without_assignments(words)
    if not words:
        return []
    program = words[0]
    if program == "make":
        targets = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        return [f"make target {t!r} is not in the Makefile" for t in targets
                if t not in make_targets()]
    if program.endswith("/fsapps") or program == "fsapps":
        return fsapps_problems(words[1:])
    if re.search(r"(^|/)python3?$", program) and len(words) > 2 and words[1] == "-m":
        module = words[2]
        if module == "fsapps.cli":
            return fsapps_problems(words[3:])
        if module == "pytest":
            return pytest_problems(words[3:])
        if module in ("pip", "venv"):
            return []
        if importlib.util.find_spec(module) is None:
            return [f"no module {module}"]
        return []
    if program.endswith("/pytest") or program == "pytest":
        return pytest_problems(words[1:])
    if program == "fs_cli":
        line = words[words.index("-x") + 1] if "-x" in words else ""
        return switch_command_problems(line)
    if program == "curl":
        paths = [re.sub(r"^https?://[^/]+", "", w) for w in words if re.match(r"https?://", w)]
        return [f"{p} is not a route of the CTI server" for p in paths if not is_route(p)]
    if program in EXTERNAL:
        return []
    return [f"unknown program {program!r} (add it to EXTERNAL if it is not fsapps')"]


def fsapps_problems(args: list[str]) -> list[str]:
    from fsapps.cli import build_parser

    args = [re.sub(r"\$\w+", "x", a) for a in args]
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            build_parser().parse_args(args)
    except SystemExit as exc:
        return [f"fsapps {' '.join(args)}: the fsapps parser refuses it ({exc.code})"]
    return []


def pytest_problems(args: list[str]) -> list[str]:
    found = []
    skip_next = False
    for arg in args:
        if skip_next or arg.startswith("-"):
            skip_next = arg in ("-k", "-m", "-p")
            continue
        path, _, test = arg.partition("::")
        file = ROOT / path
        if not file.exists():
            found.append(f"no test file {path}")
        elif test and not re.search(rf"^(async )?def {re.escape(test)}\(", file.read_text(), re.M):
            found.append(f"{path} has no test {test}")
    return found


def switch_command_problems(line: str) -> list[str]:
    name = line.split()[0] if line.split() else ""
    if name.startswith("nway") and name not in switch_commands():
        return [f"no switch command {name}"]
    if name == "python" and len(line.split()) > 1:
        module = line.split()[1]
        if importlib.util.find_spec(module) is None:
            return [f"no module {module}"]
    return []


# ------------------------------------------------------------------------------- tests -----
SHELL_BLOCKS = [b for page in PAGES for b in blocks(page) if b.lang in ("sh", "bash", "shell")]


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=Block.where)
def test_every_shell_command_names_what_exists(block: Block) -> None:
    found = [f"{line}: {problem}" for line in shell_lines(block)
             for seg in segments(line) for problem in problems_of_command(seg)]
    assert not found, "\n".join(found)


TRANSCRIPTS = [b for page in PAGES for b in blocks(page) if not b.lang
               and re.search(r"(?m)^(\$ |freeswitch@\w+> )", b.text)]


@pytest.mark.parametrize("block", TRANSCRIPTS, ids=Block.where)
def test_every_transcript_line_names_what_exists(block: Block) -> None:
    found = []
    for line in block.text.split("\n"):
        prompt = re.match(r"^freeswitch@\w+> (.*?)(\s{2,}\(.*)?$", line)
        if prompt:
            found += switch_command_problems(prompt.group(1))
        elif line.startswith("$ "):
            command = re.sub(r"\s+#\s.*$", "", line[2:])
            found += [p for seg in segments(command) for p in problems_of_command(seg)]
    assert not found, "\n".join(found)


FSAPPS_TRANSCRIPTS = [b for b in TRANSCRIPTS if re.search(r"(?m)^\$ (\w+=\S+ )*fsapps ", b.text)]


@pytest.mark.parametrize("block", FSAPPS_TRANSCRIPTS, ids=Block.where)
def test_fsapps_prints_what_the_transcript_shows(block: Block, tmp_path: Path) -> None:
    """``$ fsapps ...`` is run (files named in its comment, ``# bad.yaml: cti: {port: 1}``,
    are written first) and must print the lines that follow it, exactly."""
    runs: list[tuple[str, list[str]]] = []
    for line in block.text.split("\n"):
        if line.startswith("$ "):
            runs.append((line[2:], []))
        elif runs:
            runs[-1][1].append(line)
    for command, expected in runs:
        for name, content in re.findall(r"#.*?(\S+\.yaml): (.*)$", command):
            (tmp_path / name).write_text(content + "\n")
        words = shlex.split(re.sub(r"\s+#\s.*$", "", command))
        env = {k: v for k, v in os.environ.items() if not k.startswith("FSAPPS_")}
        while "=" in words[0]:
            key, _, value = words.pop(0).partition("=")
            env[key] = value
        assert words[0] == "fsapps"
        done = subprocess.run([sys.executable, "-m", "fsapps.cli", *words[1:]], cwd=tmp_path,
                              env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True,
                              text=True, timeout=30)
        printed = (done.stdout + done.stderr).strip().split("\n")
        want = [line for line in expected if line.strip()]
        assert printed == want, f"{block.where()}: $ {command}"


def links() -> Iterator[tuple[Path, str]]:
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", prose(page)):
            if not re.match(r"^[a-z]+:", target):
                yield page, target


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", lambda m: "_" if m.group(0) == "_" else "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(page: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"(?m)^#+\s+(.*)$", prose(page))}


@pytest.mark.parametrize(("page", "target"), list(links()),
                         ids=[f"{p.name}->{t}" for p, t in links()])
def test_every_relative_link_resolves(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    file = (page.parent / path).resolve() if path else page
    assert file.exists(), f"{page.name}: {target} does not exist"
    assert file.is_relative_to(ROOT), f"{page.name}: {target} leaves the repository"
    if anchor and file.suffix == ".md":
        assert anchor in anchors(file), f"{page.name}: no heading #{anchor} in {file.name}"


def code_spans(page: Path) -> list[str]:
    text = prose(page)
    return re.findall(r"`([^`\n]+)`", text) + [b.text for b in blocks(page)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_quoted_repository_path_exists(page: Path) -> None:
    missing = []
    for span in code_spans(page):
        for path in REPO_PATH.findall(span):
            path = path.rstrip(".")
            if FREESWITCH_SIDE.match(path):
                continue
            if not (list(ROOT.glob(path)) or list(ROOT.glob(path + ".py"))):
                missing.append(path)
    assert not missing, f"{page.name}: {sorted(set(missing))}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_quoted_cti_url_path_is_a_route(page: Path) -> None:
    quoted = []
    for span in code_spans(page):
        quoted += re.findall(r"(?:GET|POST|DELETE|PUT) (/\S+)", span)
        quoted += re.findall(r"https?://(?:127\.0\.0\.1|localhost|ip|cti\.example\.com)"
                             r"(?::\d+)?(/[^\s'\"`)]*)", span)
        if CTI_PATH.match(span):
            quoted.append(span.split()[0])
    bad = sorted({p for p in quoted if CTI_PATH.match(p) and not is_route(p)})
    assert not bad, f"{page.name}: not routes of the CTI server: {bad}"
