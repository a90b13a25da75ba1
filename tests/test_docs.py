"""The README is a front door and docs/ holds the reference: every command documented, every link resolving."""

import argparse
import re
from pathlib import Path

import pytest

from studio.cli.commands import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def commands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> list[str]:
    """Every command line the parser takes, as 'data check', 'train', 'feedback list' ..."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        return [" ".join(words)]
    return [c for name, sub in actions[0].choices.items() for c in commands(sub, (*words, name))]


@pytest.mark.parametrize("command", commands(build_parser()))
def test_every_command_is_documented_in_the_command_line_page(command):
    assert f"python -m studio {command}" in (ROOT / "docs" / "command-line.md").read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_and_picture_resolves(page):
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
    broken = [t for t in targets if not t.startswith(("http://", "https://")) and not (page.parent / t).exists()]
    assert broken == []


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 300
    assert "bash scripts/start.sh" in readme and "bash scripts/test.sh" in readme
