"""Identities that see code (issue 24, item 9): every stage's identity holds the promptkit version,
a digest of the promptkit and backbones sources and, for a user factory, of its module's source; a
run resumed under other code is refused naming what changed, ``overwrite`` retrains, and
``run.json`` keeps the digests."""

from __future__ import annotations

import hashlib
import importlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from _helpers import FOREIGN_HOOKS, tiny_recipe_toml, write_recipe

import promptkit
from promptkit.recipes import load, load_recipe_data
from promptkit.train import RunDirError
from promptkit.train import run_dir as run_dir_module
from promptkit.experiment.pipeline import run_pipeline

TESTS = Path(__file__).resolve().parent
BODY = tiny_recipe_toml(
    backbone=None, data={"seed": 1}, sizes=(16, 8, 8), seq_lens=(3, 3, 3),
    prompt={"epochs": 1, "batch_size": 8, "prompter": {"prompt_length": 2}}, eval={"missing_rates": [0.5]},
)


@pytest.fixture
def factory_recipe(tmp_path, monkeypatch):
    """A recipe whose ``[backbone] factory`` is a module of its own beside it (a copy of the test
    package's model); returns the recipe's path and the module's file."""
    name = f"pk_idfac_{uuid.uuid4().hex[:10]}"
    module = tmp_path / f"{name}.py"
    module.write_text((TESTS / "_foreign_pkg" / "models.py").read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    recipe = write_recipe(tmp_path, f'[backbone]\nfactory = "{name}:build"\n[backbone.config]\ndim = 4\n'
                                    f"{FOREIGN_HOOKS}{BODY}")
    yield recipe, module
    sys.modules.pop(name, None)


def _run(recipe: Path, out: Path, **kw) -> dict:
    r = load(recipe)
    return run_pipeline(r, load_recipe_data(r), out, device="cpu", progress=False, methods=["mplmm"], **kw)


def test_resuming_after_the_factorys_source_changed_is_refused_naming_the_digests(factory_recipe, tmp_path):
    """Before: the backbone and adapter trained by the old factory were reused under the new one."""
    recipe, module = factory_recipe
    out = tmp_path / "run"
    _run(recipe, out)
    old = hashlib.sha256(module.read_bytes()).hexdigest()
    for stage in ("pretrain", "prompt"):  # the run record keeps the digests
        code = json.loads((out / stage / "run.json").read_text())["identity"]["code"]
        assert code == {"promptkit": promptkit.__version__, "source": run_dir_module.source_digest(),
                        "factory_source": old}, stage
    assert json.loads((out / "protocol.json").read_text())["code"]["factory_source"] == old
    _run(recipe, out, resume=True)  # the same code resumes (nothing left to train)

    module.write_text(module.read_text().replace("nn.ReLU()", "nn.Tanh()"))  # the user edits the model
    new = hashlib.sha256(module.read_bytes()).hexdigest()
    with pytest.raises(RunDirError, match=rf"pretrain holds a different run \(settings differ in: "
                                          rf"code\.factory_source\): the code changed since this stage ran "
                                          rf"\(code\.factory_source: {old} in run\.json, {new} now\)"):
        _run(recipe, out, resume=True)
    _run(recipe, out, overwrite=True)  # asked for: the stages are trained again by the new code
    for stage in ("pretrain", "prompt"):
        assert json.loads((out / stage / "run.json").read_text())["identity"]["code"]["factory_source"] == new


def test_resuming_under_another_promptkit_source_is_refused(tmp_path, monkeypatch):
    from promptkit.recipes import from_dict
    from promptkit.train.pretrain import pretrain

    recipe = from_dict({"backbone": {"name": "mult", "config": {"d_model": 8, "num_heads": 2, "layers": 1}},
                        "data": {"source": "synthetic", "sizes": {"train": 16, "valid": 8, "test": 8},
                                 "synthetic": {"seq_lens": {"text": 3, "audio": 3, "vision": 3}}},
                        "pretrain": {"epochs": 1, "batch_size": 8}})
    data = load_recipe_data(recipe)
    pretrain(recipe, data, tmp_path, progress=False)
    before = run_dir_module.source_digest()
    monkeypatch.setattr(run_dir_module, "source_digest", lambda: "f" * 64)  # as if promptkit's code changed
    with pytest.raises(RunDirError, match=rf"settings differ in: code\.source\): the code changed since this stage "
                                          rf"ran \(code\.source: {before} in run\.json, f{{64}} now\)"):
        pretrain(recipe, data, tmp_path, resume=True, progress=False)


def test_the_source_digest_is_the_same_in_another_process():
    code = run_dir_module.code_identity()
    other = subprocess.run([sys.executable, "-c", "import json; from promptkit.train.run_dir import code_identity; "
                            "print(json.dumps(code_identity()))"], capture_output=True, text=True, timeout=300)
    assert other.returncode == 0, other.stderr[-2000:]
    assert json.loads(other.stdout) == code and len(code["source"]) == 64


def test_the_ablation_benchmark_does_not_read_back_a_record_of_other_code(tmp_path):
    """Before: a finished variant's ``valid.json`` was read back whatever code had trained it."""
    from benchmarks import ablation

    recipe = write_recipe(tmp_path, tiny_recipe_toml(name="tiny-ablation"), "tiny.toml")
    done = tmp_path / "work" / "base" / "s0" / "valid.json"
    done.parent.mkdir(parents=True)
    done.write_text(json.dumps({"variant": "base", "seed": 0, "valid": {}}))  # as an older benchmark wrote it
    with pytest.raises(RuntimeError, match=r"valid\.json was trained by other code \(code\.promptkit: None in "
                                           r"valid\.json, .* now; code\.source: .*\); remove .*s0 or use another --work"):
        ablation.run_variant(str(recipe), "base", {}, 0, str(tmp_path / "work"))
    code = run_dir_module.code_identity()
    done.write_text(json.dumps({"variant": "base", "seed": 0, "code": code, "valid": {}}))
    assert ablation.run_variant(str(recipe), "base", {}, 0, str(tmp_path / "work"))["code"] == code


@pytest.mark.parametrize("bench", ["table1", "table2"])
def test_the_table_benchmarks_do_not_read_back_a_run_of_other_code(tmp_path, bench):
    """Before: a finished seed's ``protocol.json`` was read back whatever code had produced it (Table
    1 was once reported from stages trained by an older promptkit)."""
    import importlib

    from promptkit.recipes import load

    module = importlib.import_module(f"benchmarks.{bench}")
    recipe = load(write_recipe(tmp_path, tiny_recipe_toml(name="tiny-table"), "tiny.toml"))
    work = tmp_path / "work"
    work.mkdir()
    results = {"zero_filled": {"rates": {str(float(r)): {} for r in recipe.eval.missing_rates}}}
    stale = {"results": results, "code": {**run_dir_module.code_identity(), "source": "f" * 64}}
    (work / "protocol.json").write_text(json.dumps(stale))
    run = (lambda: module.run_seed(recipe, work, ["zero_filled"], "cpu")) if bench == "table1" else \
        (lambda: module.run_cell(recipe, None, work, "cpu"))
    with pytest.raises(RuntimeError, match=r"protocol\.json was produced by other code \(code\.source: 'f{64}' in "
                                           r"protocol\.json, '[0-9a-f]{64}' now\).*remove .*work"):
        run()
    (work / "protocol.json").write_text(json.dumps({**stale, "code": run_dir_module.code_identity()}))
    assert run()["results"] == results  # the same code's record is read back, not re-run
