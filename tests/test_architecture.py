"""The architecture, enforced: the layer order documented in the README (``### Layers``),
no import cycles, no side doors around either, and the core importing without the heavy
optional packages."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("guardrail", "generators", "audits", "dashboard")
#: groups of the same layer that must not import one another (README, "### Layers")
INDEPENDENT = (
    ("guardrail.watermark", "guardrail.provenance", "guardrail.detectors", "guardrail.fingerprint"),
    ("generators", "audits"),
)
MAX_LINES = 600


# -- the module graph ---------------------------------------------------------------------
def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for file in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(file.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = file
    return mods


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, file: Path) -> set[str]:
    """Project modules that ``module`` imports (static, at any depth in the file)."""
    tree = ast.parse(file.read_text(encoding="utf-8"))
    is_pkg = file.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join([*base, *([node.module] if node.module else [])])
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix
                       for a in node.names]
        else:
            continue
        for target in targets:
            resolved = _resolve(target)
            if resolved and resolved != module:
                found.add(resolved)
    return found


GRAPH = {m: _imports(m, f) for m, f in MODULES.items()}


# -- the documented layers ----------------------------------------------------------------
def _layers() -> list[tuple[int, list[str]]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Layers", 1)[1].split("\n#", 1)[0]
    rows = []
    for line in section.splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|([^|]*)\|", line)
        if m:
            rows.append((int(m.group(1)), re.findall(r"`([^`]+)`", m.group(2))))
    return rows


LAYERS = _layers()


def _pattern_matches(pattern: str, module: str) -> bool:
    if pattern.endswith(".*"):
        base = pattern[:-2]
        return module == base or module.startswith(base + ".")
    return fnmatchcase(module, pattern)


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (specificity, layer)
    for layer, patterns in LAYERS:
        for pattern in patterns:
            if _pattern_matches(pattern, module):
                spec = len(pattern.rstrip(".*"))
                if best is None or spec > best[0]:
                    best = (spec, layer)
    return best[1] if best else None


def test_the_readme_documents_the_layers():
    assert len(LAYERS) >= 5, "README.md must have a '### Layers' table"
    numbers = [n for n, _ in LAYERS]
    assert numbers == sorted(numbers)


def test_every_module_has_a_documented_layer():
    missing = sorted(m for m in MODULES if layer_of(m) is None)
    assert missing == [], "modules missing from the README's layer table"


def test_no_import_runs_up_the_layers():
    upward = sorted(
        f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
        for m, targets in GRAPH.items() for t in targets
        if layer_of(m) is not None and layer_of(t) is not None and layer_of(t) > layer_of(m))
    assert upward == []


def _group_of(module: str, groups: tuple[str, ...]) -> str | None:
    for g in groups:
        if module == g or module.startswith(g + "."):
            return g
    return None


@pytest.mark.parametrize("groups", INDEPENDENT, ids=lambda g: "+".join(g))
def test_independent_packages_do_not_import_each_other(groups):
    crossing = sorted(
        f"{m} imports {t}" for m, targets in GRAPH.items() for t in targets
        if (a := _group_of(m, groups)) and (b := _group_of(t, groups)) and a != b)
    assert crossing == []


def test_dashboard_never_imports_generators():
    bad = sorted(f"{m} imports {t}" for m, ts in GRAPH.items() for t in ts
                 if m.startswith("dashboard") and t.startswith("generators"))
    assert bad == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    # a package's __init__ re-exporting its modules is not a cycle of design
    graph = {m: {t for t in ts if not (MODULES[t].name == "__init__.py" and m.startswith(t + "."))}
             for m, ts in GRAPH.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_side_door_imports_of_project_modules():
    """Project modules are imported by import statements (seen above) or through the
    entry-point registry (guardrail.plugins), never by a name in a string."""
    doors = []
    for module, file in MODULES.items():
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if (name in ("import_module", "__import__") and isinstance(arg, ast.Constant)
                    and isinstance(arg.value, str)
                    and arg.value.split(".")[0] in PACKAGES):
                doors.append(f"{module}: {name}({arg.value!r})")
    assert doors == []


def test_no_module_is_too_long():
    long = sorted(f"{m}: {n} lines" for m, f in MODULES.items()
                  if (n := len(f.read_text(encoding="utf-8").splitlines())) > MAX_LINES)
    assert long == []


def test_core_import_is_light():
    code = ("import sys, guardrail, guardrail.guard, guardrail.store, guardrail.cli; "
            "heavy = [m for m in ('torch', 'transformers', 'diffusers', 'onnxruntime', 'piper') "
            "if m in sys.modules]; print(','.join(heavy))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""


def test_generators_are_registered_as_entry_points():
    from guardrail import plugins

    assert {"text", "image", "audio"} <= set(plugins.names(plugins.GENERATORS))
