"""Issue 24 item 2: loading an adapter imports nothing named in its files.

A hook spec's function ``output`` is saved as the record ``{"call": "module:qualname"}``. The
old loader imported that module (and the digests are unkeyed, so anyone could re-bind an edited
``promptkit_config.json`` into the weights' metadata). Now the record is provenance only: the
caller passes the function back with ``from_pretrained(backbone, path, hooks=spec)``, and without
it loading stops naming the file and the key. Each test's module leaves a marker file when it is
imported; the marker must stay absent.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest
import torch
from _toy import ToyMSA, toy_inputs, toy_spec

import promptkit
from promptkit.adapter_files import CONFIG_NAME, WEIGHTS_NAME
from promptkit.checkpoint import load_checkpoint, save_checkpoint
from promptkit.hookspec import CallRef, HookSpec
from promptkit.modalities import ModalitySet
from promptkit.prompter import AdapterLoadError, MissingModalityPrompter

ADIMS = {"text": 12, "audio": 5, "vision": 7}
_names = itertools.count()


@pytest.fixture
def marker_module(tmp_path, monkeypatch):
    """``(module name, marker path)``: a module on ``sys.path`` that writes the marker when imported
    and defines ``pick(out) -> out``; a fresh name per test, dropped from ``sys.modules`` after."""
    name = f"pk_marker_adapter_{next(_names)}"
    folder = tmp_path / "site"
    folder.mkdir()
    marker = tmp_path / "IMPORTED"
    (folder / f"{name}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n"
        "def pick(out):\n    return out\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    yield name, marker
    sys.modules.pop(name, None)


def inputs() -> dict[str, torch.Tensor]:
    return toy_inputs(ADIMS)


def mask() -> torch.Tensor:
    ms = ModalitySet(list(ADIMS))
    return ms.masks_from_case_ids(torch.arange(6) % len(ms.cases))


def save(directory: Path, output=None) -> tuple[torch.nn.Module, dict, torch.Tensor]:
    """A prompter with non-trivial prompts saved to ``directory``: its backbone, spec and output."""
    torch.manual_seed(0)
    backbone = ToyMSA(ADIMS)
    spec = {**toy_spec(list(ADIMS)), "output": output}
    prompter = promptkit.wrap(backbone, hooks=spec)
    with torch.no_grad():
        for p in prompter.adapter_state_dict().values():
            if p.is_floating_point():
                p.add_(torch.randn_like(p) * 0.1)
    prompter.eval()
    with torch.no_grad():
        out = prompter(**inputs(), mask=mask())
    prompter.save_pretrained(directory)
    prompter.unwrap()
    return backbone, spec, out


def rebind(directory: Path, edit) -> None:
    """Edit the config and bind it into the weights' meta again (the digests are unkeyed)."""
    cfg = json.loads((directory / CONFIG_NAME).read_text())
    edit(cfg)
    (directory / CONFIG_NAME).write_text(json.dumps(cfg, indent=2))
    tensors, meta = load_checkpoint(directory / WEIGHTS_NAME, kind="adapter")
    save_checkpoint(directory / WEIGHTS_NAME, tensors, {**meta, "config": cfg}, kind="adapter")


def test_an_output_call_rebound_into_the_files_is_not_imported(tmp_path, marker_module):
    name, marker = marker_module
    backbone, spec, _ = save(tmp_path / "ad")
    rebind(tmp_path / "ad", lambda c: c["hook_spec"].update(output={"call": f"{name}:pick"}))
    with pytest.raises(AdapterLoadError, match=rf"promptkit_config\.json: key 'hook_spec\.output' is "
                       rf"\{{'call': '{name}:pick'\}}: the adapter was saved with an output function \({name}:pick\), "
                       r"which an adapter does not hold and loading does not import; pass it back: "
                       r"from_pretrained\(backbone, '.*ad', hooks=spec\)"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path / "ad")
    assert not marker.exists() and name not in sys.modules


def test_a_saved_output_function_is_given_back_by_the_caller(tmp_path, marker_module):
    name, marker = marker_module
    __import__(name)  # the user's own code, imported by the user
    pick = sys.modules[name].pick
    marker.unlink()
    backbone, spec, expected = save(tmp_path / "ad", output=pick)
    saved = json.loads((tmp_path / "ad" / CONFIG_NAME).read_text())
    assert saved["hook_spec"]["output"] == {"call": f"{name}:pick"}  # recorded, as provenance
    del sys.modules[name]  # a fresh process: the module is not loaded

    with pytest.raises(AdapterLoadError, match=r"key 'hook_spec\.output' .* pass it back"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path / "ad")
    assert not marker.exists() and name not in sys.modules

    loaded = MissingModalityPrompter.from_pretrained(backbone, tmp_path / "ad", hooks=spec).eval()
    assert loaded.spec.output is pick and not marker.exists() and name not in sys.modules
    with torch.no_grad():
        assert torch.equal(loaded(**inputs(), mask=mask()), expected)
    loaded.unwrap()
    loaded = MissingModalityPrompter.from_pretrained(backbone, tmp_path / "ad", hooks=HookSpec.from_dict(spec)).eval()
    with torch.no_grad():
        assert torch.equal(loaded(**inputs(), mask=mask()), expected)
    loaded.unwrap()


def test_a_lambda_output_loads_when_the_caller_gives_it(tmp_path):
    """The old loader could not rebuild a lambda ({"call": null}) at all."""
    backbone, spec, expected = save(tmp_path / "ad", output=lambda out: out * 1.0)
    with pytest.raises(AdapterLoadError, match=r"key 'hook_spec\.output' is \{'call': None\}.*a lambda or a local "
                       r"function"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path / "ad")
    loaded = MissingModalityPrompter.from_pretrained(backbone, tmp_path / "ad", hooks=spec).eval()
    with torch.no_grad():
        assert torch.equal(loaded(**inputs(), mask=mask()), expected)


def test_hooks_given_at_load_must_be_the_saved_spec(tmp_path, marker_module):
    name, marker = marker_module
    backbone, spec, _ = save(tmp_path / "ad")
    other = {**spec, "trainable": ["head.0"]}
    with pytest.raises(AdapterLoadError, match=r"hooks= differs from the hook spec .*promptkit_config\.json was saved "
                       r"with: key 'hook_spec\.trainable\[0\]' is \"head\.0\", the weights were saved with \"head\""):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path / "ad", hooks=other)
    with pytest.raises(AdapterLoadError, match=r"key 'hook_spec\.output' is \{\"call\":null\}, the weights were saved "
                       r"with null"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path / "ad", hooks={**spec, "output": lambda o: o})
    with pytest.raises(AdapterLoadError, match=rf"hooks= passed to load .*ad has 'output' \{{'call': '{name}:pick'\}}, "
                       r"the record of a function, not the function"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path / "ad",
                                                hooks={**spec, "output": {"call": f"{name}:pick"}})
    assert not marker.exists()


def test_a_hook_spec_dict_imports_nothing_until_resolved(tmp_path, marker_module):
    """HookSpec.from_dict (what every file's spec goes through) keeps the call as text; wrap refuses
    it; only HookSpec.resolved() (a recipe's run) imports."""
    name, marker = marker_module
    d = {**toy_spec(list(ADIMS)), "output": {"call": f"{name}:pick"}}
    spec = HookSpec.from_dict(d)
    assert spec.output == CallRef(f"{name}:pick") and spec.needs_output_function
    assert spec.to_dict()["output"] == {"call": f"{name}:pick"}
    with pytest.raises(ValueError, match=rf"hooks: 'output' is the record \{{'call': '{name}:pick'\}} of a function, "
                       r"not the function"):
        promptkit.wrap(ToyMSA(ADIMS), hooks=d)
    with pytest.raises(TypeError, match=r"HookSpec\.output is the record .* of a function, not the function"):
        spec.read_output(torch.zeros(2, 1))
    assert not marker.exists() and name not in sys.modules
    with pytest.raises(ValueError, match=r"must name a function as 'package.module:function'"):
        HookSpec.from_dict({**d, "output": {"call": "os.system('x')"}})
    assert spec.resolved().output is sys.modules[name].pick and marker.exists()
