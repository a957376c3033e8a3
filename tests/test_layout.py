"""The package layout: the README's table matches the tree, and the stages import in order."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fredask"

#: What each stage may import from (beside itself and ``errors``): the pipeline order of the README.
ALLOWED = {
    "errors": set(),
    "backend": set(),
    "cluster": set(),
    "store": set(),
    "stats": {"backend", "cluster", "store"},
    "solvers": {"backend", "stats"},
    "measures": {"backend", "cluster", "stats", "solvers"},
    "metrics": {"backend", "cluster", "stats", "solvers", "measures"},
    "compare": {"backend", "cluster", "stats", "solvers", "measures"},
    "structure": {"backend", "cluster", "store", "stats", "solvers", "measures", "compare"},
    "extract": {"backend", "cluster", "store"},
    "maps": {"backend", "cluster", "store", "stats", "structure"},
}


def _layout_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Layout")
    return text[start : text.index("\n## ", start + 1)]


def _modules() -> set[str]:
    return {str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def test_readme_layout_names_every_module_and_only_those():
    section = _layout_section()
    named = set(re.findall(r"^\| `(fredask/[\w/]+\.py)` \| \S", section, flags=re.MULTILINE))
    groups = set(re.findall(r"^\| \*\*(\w+)\*\* \|", section, flags=re.MULTILINE))
    modules = _modules()
    # a subpackage's __init__ is named by its group row, unless it has a row of its own
    covered = named | {f"fredask/{g}/__init__.py" for g in groups}
    assert sorted(modules - covered) == [], "modules the README's layout does not name"
    assert sorted(named - modules) == [], "the README's layout names modules that do not exist"
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert groups == subpackages, "one bold group row per subpackage"


def _stage(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0].removesuffix(".py")


def _imported_stages(path: Path) -> set[str]:
    stages = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        stages |= {n.split(".")[1] for n in names if n.startswith("fredask.")}
    return stages


def test_stages_import_only_from_earlier_stages():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        stage = _stage(path)
        if stage not in ALLOWED:  # cli, bench, the package root: may use everything
            continue
        extra = _imported_stages(path) - ALLOWED[stage] - {stage, "errors"}
        if extra:
            wrong.append(f"{path.relative_to(ROOT)} imports {sorted(extra)}")
    assert wrong == []


def test_only_the_store_knows_the_zarr_layout():
    pattern = re.compile(r"\.group\[|\.group\.(?!attrs)|\[\"(structures|features|progress)\"\]")
    outside = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if _stage(path) != "store"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert outside == []
