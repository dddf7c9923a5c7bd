"""The package's import surface: names load on first use, and light modules stay light."""

import subprocess
import sys
from pathlib import Path

import pytest

import emovid_datasets
import emovid_datasets.training


def imported_after(statement: str) -> set[str]:
    """Top-level modules a fresh interpreter has imported after running ``statement``."""
    code = f"import sys; {statement}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())


def test_training_step_modules_do_not_import_datasets_or_pyav():
    """The step benchmark runs where only torch, diffusers and peft are installed (e.g. a bare GPU image)."""
    loaded = imported_after("import emovid_datasets.training.objective, emovid_datasets.training.lora, "
                            "emovid_datasets.training.models, emovid_datasets.taxonomy")
    assert "torch" in loaded and not loaded & {"datasets", "av", "pyarrow"}
    assert not imported_after("import emovid_datasets") & {"datasets", "av", "torch"}


def test_exported_names_resolve_and_are_listed():
    for package in (emovid_datasets, emovid_datasets.training):
        for name in package.__all__:
            assert getattr(package, name) is not None and name in dir(package)
    assert emovid_datasets.load_emovid.__module__ == "emovid_datasets.loading"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        emovid_datasets.nope  # noqa: B018


def test_code_passes_the_projects_ruff_config():
    from pathlib import Path

    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed (it comes with the dev extra)")
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([str(ruff), "check", "--no-cache", str(root)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def _imports(module: str, root: Path) -> set[str]:
    """Project modules ``module`` imports anywhere in its source (inside functions too), resolved to files."""
    import ast

    path = root / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = root / module.replace(".", "/") / "__init__.py"
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                package = module.rsplit(".", node.level if path.name != "__init__.py" else node.level - 1)[0]
                base = f"{package}.{base}" if base else package
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in ("builder_scripts", "emovid_datasets") and (
                    (root / (name.replace(".", "/") + ".py")).exists() or (root / name.replace(".", "/")).is_dir()):
                found.add(name)
    return found


def test_the_engine_never_imports_the_demo():
    root = Path(__file__).resolve().parents[1]
    todo = [f"builder_scripts.engine.{p.stem}" for p in (root / "builder_scripts" / "engine").glob("*.py")]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(_imports(module, root))
    assert "builder_scripts.engine.pipeline" in seen and "builder_scripts.stages.annotate" in seen
    assert not [m for m in seen if m.startswith("builder_scripts.demo")]
