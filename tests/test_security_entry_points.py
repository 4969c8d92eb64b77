"""Entry points (issue 24, item 11): a plug-in that raises anything, ``SystemExit`` included, is
skipped with a warning naming it (only ``KeyboardInterrupt`` goes through), and a registered builder
that returns no ``nn.Module`` is refused naming the backbone and what it returned."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import uuid
import warnings
from pathlib import Path

import pytest
from _helpers import tiny_recipe_toml, write_recipe

import backbones
from backbones import _registry
from promptkit import hookspec
from promptkit.cli import main


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """``add(source) -> module name``: a plug-in module in ``tmp_path`` (on ``sys.path``); the
    registry and the spec table are copies with the entry points not yet loaded, put back afterwards."""
    monkeypatch.setattr(_registry, "_BACKBONES", dict(_registry._BACKBONES))
    monkeypatch.setattr(_registry, "_entry_points_loaded", False)
    monkeypatch.setattr(hookspec, "_SPECS", dict(hookspec._SPECS))
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def add(source: str) -> str:
        name = f"pk_plugin_{uuid.uuid4().hex[:10]}"
        (tmp_path / f"{name}.py").write_text(source)
        importlib.invalidate_caches()
        names.append(name)
        return name

    yield add
    for name in names:
        sys.modules.pop(name, None)


def entry_points(monkeypatch, *values: tuple[str, str]) -> None:
    """``importlib.metadata.entry_points`` answering the backbone group with these ``(name, value)`` pairs."""
    eps = [importlib.metadata.EntryPoint(name=n, value=v, group=_registry.ENTRY_POINT_GROUP) for n, v in values]
    real = importlib.metadata.entry_points  # other groups (torch's, accelerate's) as installed
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: eps if kw.get("group") == _registry.ENTRY_POINT_GROUP else real(**kw))


def test_a_plugin_calling_sys_exit_is_skipped_with_a_warning(plugins, monkeypatch, capsys):
    """Before: ``sys.exit(3)`` in a plug-in ended every promptkit command with rc 3 and no message."""
    on_import = plugins("import sys\nsys.exit(3)\n")
    on_call = plugins("import sys\ndef register():\n    sys.exit('bye')\n")
    good = plugins("from backbones import register_backbone\nfrom torch import nn\n"
                   "@register_backbone\ndef pk_good_backbone(**cfg):\n    return nn.Linear(2, 1)\n")
    entry_points(monkeypatch, ("exits", on_import), ("exits_later", f"{on_call}:register"), ("good", good))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["backbones", "list"]) == 0
    out = capsys.readouterr().out
    assert "pk_good_backbone" in out and "mult" in out
    messages = [str(w.message) for w in caught]
    for name, value, cause in [("exits", on_import, "SystemExit: 3"), ("exits_later", f"{on_call}:register",
                                                                       "SystemExit: bye")]:
        hits = [m for m in messages if f"promptkit.backbones entry point {name!r} ({value}) was skipped" in m]
        assert len(hits) == 1 and cause in hits[0], (name, messages)

    # a Ctrl-C while a plug-in loads still stops the command
    interrupted = plugins("raise KeyboardInterrupt\n")
    entry_points(monkeypatch, ("interrupted", interrupted))
    with pytest.raises(KeyboardInterrupt):
        _registry.load_entry_points(force=True)


def test_a_builder_that_returns_no_module_is_refused_naming_the_backbone(plugins, monkeypatch, tmp_path, capsys):
    """Before: "'str' object has no attribute 'parameters'" from deep inside training."""
    mod = plugins("from backbones import register_backbone\n"
                  "@register_backbone\ndef pk_str_backbone(**cfg):\n    return 'not a model'\n")
    entry_points(monkeypatch, ("strs", mod))
    with pytest.raises(backbones.BackboneFactoryError,
                       match=rf"backbone 'pk_str_backbone': its registered builder {mod}\.pk_str_backbone returned "
                             r"a str, not a torch\.nn\.Module"):
        backbones.create_backbone("pk_str_backbone")
    recipe = write_recipe(tmp_path, tiny_recipe_toml(backbone={"name": "pk_str_backbone"}))
    assert main(["train", "--recipe", str(recipe), "--out", str(tmp_path / "out"), "--device", "cpu",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"recipe {recipe}: [backbone] backbone 'pk_str_backbone': its registered builder" in err
    assert "returned a str, not a torch.nn.Module" in err
    assert not (Path(tmp_path / "out") / "run.json").exists()
