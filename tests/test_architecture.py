"""The rules of the road from DESIGN.md that code can check."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}


def test_domain_and_jobs_never_import_gradio():
    domain = [p for p in (ROOT / "studio").rglob("*.py") if "ui" not in p.relative_to(ROOT / "studio").parts]
    domain += list((ROOT / "jobs").rglob("*.py"))
    offenders = [str(p.relative_to(ROOT)) for p in domain if any(m.split(".")[0] == "gradio" for m in imported_modules(p))]
    assert offenders == []


def test_docs_architecture_names_every_module_and_only_modules_that_exist():
    page = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"\| `((?:studio|jobs)/[\w/]+\.py|app\.py)` \|", page))
    modules = {str(p.relative_to(ROOT)) for root in ("studio", "jobs") for p in (ROOT / root).rglob("*.py")} | {"app.py"}
    assert sorted(modules - named) == [] and sorted(named - modules) == []
