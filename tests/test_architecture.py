"""The layer contract (docs/architecture.md): imports point down only, technologies do not import each
other, the CLI is a thin shell, and the repository stands alone (every docs/ reference resolves,
one version string). Checked on the source with ``ast``: every import, at module level or inside a
function, and every technology part asked for by name (``.part("fit")``)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

import devmodel
from devmodel.technologies import PARTS, names

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("devmodel", "instruments")

#: Layers, lowest first: a module may import its own layer's group or a lower layer.
LAYERS = ("core", "chip", "instruments", "store", "procedures", "replay", "model", "fit", "export", "sim",
          "train", "deploy", "report", "commands")
#: Module prefix → layer (the longest matching prefix wins).
GROUPS = {
    "devmodel": "core", "devmodel.errors": "core", "devmodel.registry": "core",
    "devmodel.validation": "core", "devmodel.stats": "core", "devmodel.forms": "core",
    "devmodel.progress": "core", "devmodel.technologies": "core",
    "devmodel.array": "chip", "devmodel.chips": "chip", "devmodel.physics": "chip",
    "instruments": "instruments",
    "devmodel.store": "store",
    "devmodel.procedures": "procedures",
    "devmodel.replay": "replay",
    "devmodel.model": "model",
    "devmodel.fit": "fit",
    "devmodel.export": "export",
    "devmodel.sim": "sim",
    "devmodel.train": "train",
    "devmodel.deploy": "deploy",
    "devmodel.report": "report",
    "devmodel.commands": "commands", "devmodel.__main__": "commands",
}
#: Layers of equal standing that must not import each other in either direction.
INDEPENDENT = {("sim", "export"), ("export", "sim")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    """The layer of a module: a technology's part by its file name (its package's declaration is
    core), everything else by the longest matching prefix of GROUPS."""
    parts = module.split(".")
    if parts[:2] == ["devmodel", "technologies"] and len(parts) >= 4:
        if parts[3] not in PARTS:
            raise AssertionError(f"{module}: a technology module must be one of the parts {sorted(PARTS)}")
        return PARTS[parts[3]]
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in GROUPS:
            return GROUPS[".".join(parts[:i])]
    raise AssertionError(f"{module} is in no layer: add it to GROUPS in tests/test_architecture.py")


def technology_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if parts[:2] == ["devmodel", "technologies"] and len(parts) >= 3 else None


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, imported module, how) for every import and every technology part asked for by name."""
    tree = ast.parse(path.read_text("utf-8"))
    me = module_name(path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, "import") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                pkg = me.split(".")[: len(me.split(".")) - node.level + (path.name == "__init__.py")]
                base = ".".join(pkg + ([node.module] if node.module else []))
            out.append((node.lineno, base, "from"))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("part", "has_part") and node.args
              and isinstance(node.args[0], ast.Constant) and node.args[0].value in PARTS):
            out.append((node.lineno, f"devmodel.technologies.any.{node.args[0].value}", "part"))
    return [(ln, m, how) for ln, m, how in out if m.split(".")[0] in PACKAGES]


def test_every_module_has_a_layer():
    for path in sources():
        layer_of(module_name(path))


def test_imports_point_down_only():
    bad = []
    for path in sources():
        me = module_name(path)
        mine = LAYERS.index(layer_of(me))
        for line, target, how in imports(path):
            theirs = layer_of(target)
            where = f"{path.relative_to(ROOT)}:{line} ({layer_of(me)}) → {target} ({theirs})"
            if LAYERS.index(theirs) > mine:
                bad.append(f"upward {how}: {where}")
            elif (layer_of(me), theirs) in INDEPENDENT:
                bad.append(f"between independent layers: {where}")
            other = technology_of(target)
            if technology_of(me) and other and other not in (technology_of(me), "any") and how != "part":
                bad.append(f"one technology imports another: {where}")
    assert not bad, "\n".join(bad)


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def test_shared_code_names_no_technology():
    """Outside the technology packages no code holds a technology's name as a string (the kind of
    literal an ``if technology == "pcm"`` needs): shared code asks the registry. One exception:
    ``serve-chip --technology`` has a default (a choice offered by the registry)."""
    allowed = {"devmodel/commands/lab.py": 1}
    techs = set(names())
    found = {}
    for path in sources():
        rel = str(path.relative_to(ROOT))
        if rel.startswith("devmodel/technologies/"):
            continue
        tree = ast.parse(path.read_text("utf-8"))
        docs = _docstrings(tree)
        n = sum(1 for node in ast.walk(tree) if isinstance(node, ast.Constant) and id(node) not in docs
                and isinstance(node.value, str) and node.value.lower() in techs)
        if n > allowed.get(rel, 0):
            found[rel] = n
    assert not found, f"technology names in shared code: {found}"


def test_commands_are_a_thin_shell():
    """The CLI modules hold options, calls and printing: no module of the command line is long."""
    for path in (ROOT / "devmodel/commands").glob("*.py"):
        n = len(path.read_text("utf-8").splitlines())
        assert n < 330, f"{path.name} has {n} lines; move what is not option parsing to the library"


def test_docs_references_resolve():
    """Every ``docs/<file>`` a docstring or comment names exists, and nothing cites files that are not
    in the repository (the design card or physics reference the project started from)."""
    missing, foreign = [], []
    files = (sources() + sorted((ROOT / "scripts").rglob("*.py")) + sorted((ROOT / "tests").rglob("*.py"))
             + sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"])
    for path in files:
        text = path.read_text("utf-8")
        for ref in re.findall(r"docs/([\w.-]+\.(?:md|json))", text):
            if not (ROOT / "docs" / ref).exists():
                missing.append(f"{path.relative_to(ROOT)} → docs/{ref}")
        if path.name == "test_architecture.py":
            continue  # its own pattern names them
        for m in re.finditer(r"(?<![\w/])(DESIGN\.md|physics\.md|anchors\.md|\.\./shared)", text):
            foreign.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert not missing, "missing docs: " + ", ".join(missing)
    assert not foreign, "references outside the repository: " + ", ".join(foreign)


def test_one_version_string():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    assert "version" not in meta["project"] and "version" in meta["project"]["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "devmodel.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", devmodel.__version__)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_private_names_across_modules(package):
    """``from x import _name`` between modules: a private name used elsewhere is not private."""
    bad = []
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PACKAGES:
                bad += [f"{path.relative_to(ROOT)}:{node.lineno} {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, bad
