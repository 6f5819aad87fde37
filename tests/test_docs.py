"""The generated references (docs/API.md, docs/CLI.md) are what docs/make_reference.py writes from the code, and the
README stays a front door whose links resolve."""

import pathlib
import re
import runpy

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_generated_references_are_up_to_date():
    module = runpy.run_path(str(REPO / "docs" / "make_reference.py"))
    for name, text in (("API.md", module["api_text"]()), ("CLI.md", module["cli_text"]())):
        assert (REPO / "docs" / name).read_text() == text, f"docs/{name} is stale: run python docs/make_reference.py"


def test_every_subcommand_uses_hyphenated_options():
    text = (REPO / "docs" / "CLI.md").read_text()
    options = re.findall(r"^\| `(--[^`]+)`", text, flags=re.M)
    assert options and [o for o in options if "_" in o] == []


@pytest.mark.parametrize(
    "page", ["README.md", "CONTRIBUTING.md", *[str(p.relative_to(REPO)) for p in sorted((REPO / "docs").rglob("*.md"))]]
)
def test_relative_links_resolve(page):
    text = (REPO / page).read_text()
    missing = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        if not ((REPO / page).parent / target).exists():
            missing.append(target)
    assert missing == [], f"{page} links to missing files: {missing}"


def test_the_readme_is_a_front_door():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200
