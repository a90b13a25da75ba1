"""The rules of the road from docs/architecture.md that code can check."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The layer order of docs/architecture.md: a module imports its own unit and the layers below it; of the
# units of one layer, only evaluate may import train (it judges what training made).
LAYERS = [("errors", "__init__"), ("settings", "device", "staging"), ("store",), ("data", "models", "people"), ("adapters",),
          ("train", "evaluate", "chat", "feedback", "export", "storage"), ("jobs",), ("ui", "cli"), ("app", "__main__")]
LAYER = {unit: number for number, units in enumerate(LAYERS) for unit in units}
SIDEWAYS = {("evaluate", "train")}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function (`from studio import x` counts as studio.x)."""
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {f"studio.{a.name}" for a in node.names} if node.module == "studio" else {node.module}
    return names


def unit(module: str) -> str | None:
    """The unit of the layer order a module belongs to: studio's sub-package or top module, jobs, app; None outside."""
    parts = module.split(".")
    if parts[0] in ("jobs", "app"):
        return parts[0]
    if parts[0] != "studio":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def project_files() -> list[Path]:
    return [*(ROOT / "studio").rglob("*.py"), *(ROOT / "jobs").rglob("*.py"), ROOT / "app.py"]


def layer_violations(path: Path, root: Path = ROOT) -> list[str]:
    source = unit(".".join(path.relative_to(root).with_suffix("").parts))
    found = []
    for module in sorted(imported_modules(path)):
        target = unit(module)
        if target in (None, source) or LAYER[target] < LAYER[source] or (source, target) in SIDEWAYS:
            continue
        found.append(f"{path.relative_to(root)} imports {module} ({target} is not below {source})")
    return found


def test_every_import_follows_the_layer_order():
    assert [v for path in project_files() for v in layer_violations(path)] == []


def test_the_layer_rule_catches_a_domain_module_that_imports_the_queue(tmp_path):
    offender = tmp_path / "studio" / "train" / "plan.py"
    offender.parent.mkdir(parents=True)
    offender.write_text("def plan():\n    from jobs.control import submit\n")
    assert layer_violations(offender, tmp_path) == ["studio/train/plan.py imports jobs.control (jobs is not below train)"]


def test_every_unit_has_a_layer():
    units = {unit(".".join(p.relative_to(ROOT).with_suffix("").parts)) for p in project_files()}
    assert units <= set(LAYER)


def test_domain_and_jobs_never_import_gradio():
    domain = [p for p in (ROOT / "studio").rglob("*.py") if "ui" not in p.relative_to(ROOT / "studio").parts]
    domain += list((ROOT / "jobs").rglob("*.py"))
    offenders = [str(p.relative_to(ROOT)) for p in domain if any(m.split(".")[0] == "gradio" for m in imported_modules(p))]
    assert offenders == []


def test_docs_architecture_names_every_module_and_only_modules_that_exist():
    page = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"\| `((?:studio|jobs)/[\w/]+\.py|app\.py)` \|", page))
    modules = {str(p.relative_to(ROOT)) for p in project_files()}
    assert sorted(modules - named) == [] and sorted(named - modules) == []
