"""The layer rules of docs/architecture.md, checked in fresh interpreters, and one home per method name."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from promptkit.methods import get_method, list_methods

ROOT = Path(__file__).resolve().parents[1]

# package imported -> package prefixes it must never load (directly or through anything it imports)
NEVER: dict[str, tuple[str, ...]] = {
    "promptkit.modalities": ("backbones", "promptkit.train", "promptkit.methods", "promptkit.experiment"),
    "promptkit.hookspec": ("backbones", "promptkit.train", "promptkit.methods", "promptkit.experiment"),
    "promptkit.prompter": ("backbones", "promptkit.train", "promptkit.methods", "promptkit.experiment",
                           "promptkit.recipes"),
    "promptkit.recipes": ("backbones", "promptkit.train", "promptkit.methods", "promptkit.experiment"),
    "promptkit.data": ("backbones", "promptkit.train", "promptkit.methods", "promptkit.experiment"),
    "promptkit.metrics": ("backbones", "promptkit.train", "promptkit.methods", "promptkit.experiment"),
    "promptkit.evaluation": ("backbones", "promptkit.train", "promptkit.methods", "promptkit.experiment"),
    "promptkit.cggm": ("backbones", "promptkit.train", "promptkit.methods", "promptkit.experiment"),
    "promptkit.train": ("promptkit.methods", "promptkit.experiment"),
    "promptkit.methods": ("promptkit.experiment",),
    "backbones": ("promptkit.train", "promptkit.data", "promptkit.methods", "promptkit.experiment",
                  "promptkit.recipes"),
}


_PROBE = """
import json, os, sys, importlib
for lib in ("numpy", "torch", "einops", "safetensors", "torchmetrics", "accelerate", "timm", "rich", "matplotlib",
            "matplotlib.pyplot", "transformers"):  # third-party imports, shared by every probe below
    try:
        importlib.import_module(lib)
    except ImportError:
        pass
for package in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a fresh child per package: nothing of promptkit or backbones is loaded yet
        os.close(read)
        importlib.import_module(package)
        loaded = sorted(m for m in sys.modules if m.startswith(("promptkit", "backbones")))
        os.write(write, json.dumps(loaded).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        text = f.read()
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"package": package, "loaded": json.loads(text) if status == 0 else None}))
"""


@pytest.fixture(scope="module")
def loaded_by() -> dict[str, list[str] | None]:
    """Package → the promptkit/backbones modules importing it loads, each in a fresh forked child of one
    interpreter that has imported only third-party libraries (one interpreter start for all)."""
    out = subprocess.run([sys.executable, "-c", _PROBE, *sorted(NEVER)], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return {r["package"]: r["loaded"] for r in rows}


@pytest.mark.parametrize("package", sorted(NEVER))
def test_a_package_never_loads_the_layers_above_it(package, loaded_by):
    loaded = loaded_by[package]
    assert loaded is not None, f"importing {package} failed in a fresh interpreter"
    assert package.split(".")[0] in {m.split(".")[0] for m in loaded}  # the probe saw the import
    broken = [m for m in loaded for banned in NEVER[package] if m == banned or m.startswith(banned + ".")]
    assert not broken, f"importing {package} loads {broken}, which it must not (docs/architecture.md)"


def _string_constants(path: Path) -> set[str]:
    """The string constants of a module, leaving out docstrings, ``__all__`` and adapter type names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    # an adapter type's name (AdapterType(name="lora")) is a file format's, not a method's
    adapter_names = {id(k.value) for node in ast.walk(tree) if isinstance(node, ast.Call)
                     and getattr(node.func, "id", getattr(node.func, "attr", None)) == "AdapterType"
                     for k in node.keywords if k.arg == "name"}
    # __all__ lists Python names (the function backbones.mctn.mctn), not methods
    exported = {id(c) for node in ast.walk(tree) if isinstance(node, ast.Assign)
                and any(getattr(t, "id", None) == "__all__" for t in node.targets) for c in ast.walk(node.value)}
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docstrings | adapter_names | exported}


OTHER_NAMESPACES = {
    ("promptkit/data/loaders/detect.py", "mmin"): "a data format's alias: MMIN's h5 files",
}
"""(module, string) pairs where a method's name means something else."""


def _split_into(module: Path) -> set[str]:
    """The sibling modules ``module`` imports from (``from .lora_files import ...``): the files it is split into."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    return {(module.parent / f"{node.module}.py").relative_to(ROOT).as_posix() for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
            and not node.module.startswith(("registry", "_"))}


def test_each_built_in_method_is_named_in_exactly_one_library_module():
    """Outside the module that registers it (and the files that module is split into) no library
    module spells a method's name: no table of labels, stage directories or defaults elsewhere."""
    library = sorted([*ROOT.glob("promptkit/**/*.py"), *ROOT.glob("backbones/**/*.py")])
    constants = {p: _string_constants(p) for p in library}
    for name in list_methods(reference=True):
        homes = {p.relative_to(ROOT).as_posix() for p, strings in constants.items() if name in strings}
        homes -= {path for path, word in OTHER_NAMESPACES if word == name}
        module = ROOT / (get_method(name).fit.__module__.replace(".", "/") + ".py")
        home = module.relative_to(ROOT).as_posix()
        assert home in homes, f"method {name!r} is not named where it is registered, {home}"
        assert homes <= {home} | _split_into(module), (
            f"method {name!r} is spelled out in {sorted(homes - {home})}; only {home} may name it")


def test_the_registry_answers_for_every_method_it_lists():
    for name in list_methods(reference=True):
        spec = get_method(name)
        assert spec.name == name and spec.label and spec.short and spec.trains and spec.stage_dir
    assert [n for n in list_methods(reference=True) if get_method(n).reference] == ["zero_filled"]
    assert "zero_filled" not in list_methods()
