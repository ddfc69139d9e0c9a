"""Dependency direction: guardrail/ imports none of generators/, audits/, dashboard/;
the dashboard never generates; the core imports without the heavy optional packages."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for file in folder.rglob("*.py"):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(file.relative_to(ROOT))] = names
    return found


def test_guardrail_imports_none_of_the_outer_folders():
    bad = {f: n & {"generators", "audits", "dashboard"}
           for f, n in imported_modules(ROOT / "guardrail").items()}
    assert {f: n for f, n in bad.items() if n} == {}


def test_dashboard_never_imports_generators():
    bad = {f: n & {"generators"} for f, n in imported_modules(ROOT / "dashboard").items()}
    assert {f: n for f, n in bad.items() if n} == {}


def test_core_import_is_light():
    code = ("import sys, guardrail, guardrail.pipeline, guardrail.store, guardrail.cli; "
            "heavy = [m for m in ('torch', 'transformers', 'diffusers', 'onnxruntime', 'piper') "
            "if m in sys.modules]; print(','.join(heavy))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""


def test_generators_are_registered_as_entry_points():
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="guardrail.generators")}
    assert eps == {"text": "generators.text:load", "image": "generators.image:load",
                   "audio": "generators.audio:load"}
