"""Layering: the models (audiotok/codecs, modules, quantizers) never import the training side
(train, distill, eval, tokenize), the command line or the demo, directly or through anything
they import.

The graph comes from the files' own import statements (ast), function-level imports
included, plus the package `__init__` files that importing a submodule runs; a run-time check
in a fresh interpreter confirms it for what the registries' discovery imports."""

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "audiotok"
MODELS = ("audiotok.codecs", "audiotok.modules", "audiotok.quantizers")
# "audiotok.demo" is the demo package (and would cover a top-level demo_* module too)
FORBIDDEN = ("audiotok.train", "audiotok.distill", "audiotok.eval", "audiotok.tokenize",
             "audiotok.cli", "audiotok.demo")


def module_name(path: Path, root: Path) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """The modules of `modules` that file `path` (module `name`) imports anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            # `from pkg import x` imports pkg, and pkg.x where x is a module
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(t for t in targets if t in modules)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the modules it imports, with the packages above it (importing a.b.c runs
    a/__init__.py and a/b/__init__.py)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = (imports_of(path, name, set(files)) | parents) - {name}
    return graph


def under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") or
               (p.endswith("demo") and name.startswith(p)) for p in prefixes)


def violations(graph: dict[str, set[str]], models=MODELS, forbidden=FORBIDDEN) -> list[str]:
    """Each forbidden module the models reach, with one import chain that reaches it."""
    via: dict[str, str | None] = {m: None for m in graph if under(m, models)}
    todo = list(via)
    while todo:
        m = todo.pop()
        for n in sorted(graph[m]):
            if n not in via:
                via[n] = m
                todo.append(n)
    found = []
    for m in sorted(n for n in via if under(n, forbidden)):
        chain = [m]
        while via[chain[-1]] is not None:
            chain.append(via[chain[-1]])
        found.append(" <- ".join(chain))
    return found


def test_models_do_not_import_the_training_side():
    graph = import_graph(ROOT)
    # the scan sees real edges (else an empty graph would pass)
    assert "audiotok.quantizers" in graph["audiotok.codecs.base"]
    assert "audiotok.modules.ssl" in graph["audiotok.codecs.ssl_kmeans"]
    assert "audiotok.distill.teachers" in graph["audiotok.distill.teacher_factory"]
    bad = violations(graph)
    assert not bad, "models import the training side:\n" + "\n".join(bad)


def test_models_do_not_import_the_package_root():
    """`audiotok/__init__.py` imports the codecs: a model importing it (for __version__)
    would import itself through it. The version lives in the leaf audiotok/_version.py."""
    files = {module_name(p, ROOT): p for p in ROOT.rglob("*.py")}
    root_users = [m for m, p in files.items() if under(m, MODELS) and
                  "audiotok" in imports_of(p, m, set(files))]
    assert not root_users
    base = ROOT / "codecs" / "base.py"
    assert "audiotok._version" in imports_of(base, "audiotok.codecs.base", set(files))
    assert not imports_of(ROOT / "_version.py", "audiotok._version", set(files))


def test_checker_reports_an_indirect_import(tmp_path):
    """A model importing a helper whose function imports the trainer is found, with its
    chain; so is one reached only through a package __init__."""
    pkg = tmp_path / "audiotok"
    files = {
        "__init__.py": "",
        "helpers.py": "def run():\n    from .train.loop import fit\n    return fit\n",
        "codecs/__init__.py": "",
        "codecs/family.py": "from ..helpers import run\n",
        "modules/__init__.py": "",
        "modules/block.py": "from ..eval import metrics\n",
        "eval/__init__.py": "from .metrics import score\n",
        "eval/metrics.py": "score = 1\n",
        "train/__init__.py": "",
        "train/loop.py": "fit = 1\n",
    }
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    bad = violations(import_graph(pkg))
    assert "audiotok.train.loop <- audiotok.helpers <- audiotok.codecs.family" in bad
    assert "audiotok.eval.metrics <- audiotok.modules.block" in bad
    assert any(b.startswith("audiotok.train <- ") for b in bad)  # the package of train.loop
    (pkg / "helpers.py").write_text("def run():\n    return 1\n")
    (pkg / "modules/block.py").write_text("x = 1\n")
    assert violations(import_graph(pkg)) == []


def test_discovery_imports_no_training_module():
    """At run time: import audiotok and let every registry discover its packages."""
    code = (
        "import sys, audiotok\n"
        "from audiotok.codecs.components import DECODERS, ENCODERS, GLOBAL_ENCODERS\n"
        "from audiotok.quantizers import QUANTIZERS\n"
        "for r in (ENCODERS, DECODERS, GLOBAL_ENCODERS, QUANTIZERS):\n"
        "    assert r.names()\n"
        f"bad = [m for m in sys.modules if m.startswith({FORBIDDEN!r})]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                         text=True,
                         cwd=ROOT.parent, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout
