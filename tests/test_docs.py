"""The README and docs/ point at things that exist: every relative link (and its #anchor),
every repository path they name, every `*_tiny` recipe they promise; and the README's test
command is the one CI runs."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "recipes" / "README.md",
         ROOT / "audiotok" / "assets" / "models" / "speech-16k" / "README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")
# a path from the repository root: a known top folder, then path characters; stops at
# placeholders such as <name> and globs; not after ":" (`git show REV:path`, a past file)
PATH = re.compile(r"(?<![\w/.:-])((?:recipes|benchmarks|scripts|docs|tests|demo|audiotok|\.ci)"
                  r"/[\w./-]*[\w/])")
NOT_PATHS = {"audiotok/speech-16k"}  # the bundled codec's name
GENERATED = ("tests/artifacts/",)    # written by the tests
TINY = re.compile(r"\b(\w+_tiny)\b")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    heads = re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"\w+://", target):
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        assert path.exists(), f"{page.name}: link to {target} (no {path})"
        if anchor:
            assert anchor in anchors(path), f"{page.name}: no heading for #{anchor} in {file}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_paths_exist(page):
    missing = sorted({p for p in PATH.findall(page.read_text())
                      if p.rstrip("/") not in NOT_PATHS and not p.startswith(GENERATED)
                      and not (ROOT / p).exists()})
    assert not missing, f"{page.relative_to(ROOT)} names paths that do not exist: {missing}"


def test_promised_tiny_recipes_exist():
    recipes = {p.stem for p in (ROOT / "recipes").rglob("*.yaml")}
    for page in PAGES:
        missing = sorted(set(TINY.findall(page.read_text())) - recipes)
        assert not missing, f"{page.relative_to(ROOT)} names tiny recipes that do not exist: {missing}"


def test_readme_test_command_is_what_ci_runs():
    assert "./scripts/test.sh" in (ROOT / "README.md").read_text()
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
    assert "pytest" in (ROOT / "scripts" / "test.sh").read_text()
