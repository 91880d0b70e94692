"""The documentation holds together: README.md is a short entry with a table of contents, every
relative link of README.md and docs/*.md reaches a file (and a heading, GitHub's anchors), and no
page speaks of the project's own history ("seed", issue numbers) instead of its behaviour."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
# Written by `make bench` from the bench scripts' own words; its links are still checked.
GENERATED_ELSEWHERE = {ROOT / "docs" / "benchmarks.md"}
README_MAX_LINES = 300

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
SEED = re.compile(r"\bseed\b", re.IGNORECASE)
# "issue 12" is ours; "gunicorn issue 1757" names another project's tracker and stays.
ISSUE = re.compile(r"(?:(\S+)\s+)?\bissues?\s+#?\d+", re.IGNORECASE)
NOT_A_PROJECT = {"a", "after", "and", "as", "at", "before", "by", "closes", "fixes", "for", "from", "in",
                 "is", "of", "on", "our", "per", "see", "since", "the", "this", "to", "was", "with"}


def speaks_of_its_history(line: str) -> bool:
    """True when a line says "seed" or cites an issue number of this project."""
    if SEED.search(line):
        return True
    for match in ISSUE.finditer(line):
        before = (match.group(1) or "").strip("(\"'*_[").lower()
        if not before or before in NOT_A_PROJECT or not before[-1].isalnum():
            return True
    return False


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file; repeated headings get -1, -2 ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(path.read_text()):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every Markdown link and image outside code."""
    found = []
    for number, line in prose_lines(path.read_text()):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            found.append((number, match.group(1)))
    return found


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """One line per relative link that reaches no file of ``root``, or no heading of the page it names."""
    problems = []
    for number, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(root)}:{number}: {target}"
        if not linked.exists():
            problems.append(f"{where}: no such file")
        elif not linked.is_relative_to(root):
            problems.append(f"{where}: outside the repository")
        elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked)):
            problems.append(f"{where}: no heading with anchor #{anchor} in {linked.relative_to(root)}")
    return problems


def test_slugs_follow_github() -> None:
    assert slug("Scaling the HTTP tier, and TTIN/TTOU") == "scaling-the-http-tier-and-ttinttou"
    assert slug("Load testing: `cluster bench`") == "load-testing-cluster-bench"
    assert slug("`[server]`") == "server"
    assert slug("A client's mistake is a 4xx") == "a-clients-mistake-is-a-4xx"
    assert slug("Health checks under `cluster start`") == "health-checks-under-cluster-start"


def test_the_checker_sees_a_broken_link_and_a_broken_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## Real heading\n")
    page.write_text("# Page\n\n[ok](other.md#real-heading) [gone](missing.md)\n"
                    "[bad](other.md#no-such) [self](#page) `[code](missing.md)`\n"
                    "```\n[fenced](missing.md)\n```\n")
    assert broken_links(page, root=tmp_path) == ["page.md:3: missing.md: no such file",
                        "page.md:4: other.md#no-such: no heading with anchor #no-such in other.md"]


@pytest.mark.parametrize(("line", "internal"), [
    ("the seed's names work", True), ("(issue 24, findings 1 and 8)", True), ("before this (issue 12): 14 s", True),
    ("Issue 7 says", True), ("see issue #7", True), ("a seeded random trace", False),
    ("(gunicorn issue 1757)", False), ("gunicorn issues 1236, 3394", False), ("libuv/libuv#3696", False),
])
def test_history_words_are_told_from_other_projects_issues(line: str, internal: bool) -> None:
    assert speaks_of_its_history(line) is internal


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_reach_a_file_and_a_heading(path: Path) -> None:
    assert broken_links(path) == []


@pytest.mark.parametrize("path", [p for p in PAGES if p not in GENERATED_ELSEWHERE],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_speaks_of_the_seed_or_issue_numbers(path: Path) -> None:
    hits = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
            for number, line in enumerate(path.read_text().splitlines(), 1) if speaks_of_its_history(line)]
    assert hits == [], "say what the code does, not where it came from"


def test_the_readme_is_an_entry_with_a_table_of_contents() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES, "the reference belongs in docs/"
    sections = [slug(m.group(2)) for _, line in prose_lines(text)
                if (m := HEADING.match(line)) and m.group(1) == "##"]
    assert sections and sections[0] == "contents", "the first section is the table of contents"
    body = text.split("## Contents", 1)[1].split("\n## ", 1)[0]
    listed = {m.group(1)[1:] for m in LINK.finditer(body) if m.group(1).startswith("#")}
    assert set(sections[1:]) <= listed, f"sections missing from the contents: {set(sections[1:]) - listed}"
