"""One adapter file path for every adapter type: the prompter's, LoRA's and the attention prompts'.

Each type's directory is refused by every other type's loader (naming the config file, what it
holds and the loader to use) before anything is built or copied, and the LoRA and attention-prompt
adapters refuse an edited config or corrupt weights the way the prompter's do.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from _toy import ToyMSA, toy_spec

import promptkit
from promptkit.adapter_files import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    AdapterLoadError,
    AdapterType,
)
from promptkit.methods.lora import (
    LORA_ADAPTER,
    has_lora,
    inject_lora,
    load_lora_adapter,
    save_lora_adapter,
)
from promptkit.methods.mpmm_attention import ATTN_ADAPTER, AttentionPrefixPrompts
from promptkit.prompter import MissingModalityPrompter
from promptkit.prompter.io import PROMPTER_ADAPTER

ADIMS = {"text": 12, "audio": 5, "vision": 7}
SPEC = toy_spec(list(ADIMS))
TYPES: dict[str, AdapterType] = {t.name: t for t in (PROMPTER_ADAPTER, LORA_ADAPTER, ATTN_ADAPTER)}
LOADERS: dict[str, Callable[[torch.nn.Module, Path], object]] = {
    "prompter": lambda backbone, path: MissingModalityPrompter.from_pretrained(backbone, path),
    "lora": lambda backbone, path: load_lora_adapter(backbone, path),
    "mpmm_attn": lambda backbone, path: AttentionPrefixPrompts.from_pretrained(backbone, path, SPEC),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[torch.nn.Module, dict[str, Path]]:
    """One ToyMSA and an adapter directory of each type saved on it."""
    root = tmp_path_factory.mktemp("adapters")
    torch.manual_seed(0)
    backbone = ToyMSA(ADIMS).eval()
    prompter = promptkit.wrap(backbone, hooks=SPEC)
    prompter.save_pretrained(root / "prompter")
    prompter.unwrap()
    attention = AttentionPrefixPrompts(backbone, SPEC, length=2)
    attention.save_pretrained(root / "mpmm_attn")
    attention.remove()
    save_lora_adapter(inject_lora(copy.deepcopy(backbone), r=2, hooks=SPEC), root / "lora", hooks=SPEC)
    return backbone, {name: root / name for name in TYPES}


def test_each_adapter_type_is_refused_by_every_other_types_loader(saved):
    backbone, paths = saved
    for (saved_as, path), (loaded_as, load) in itertools.product(paths.items(), LOADERS.items()):
        target = copy.deepcopy(backbone)
        before = {k: v.clone() for k, v in target.state_dict().items()}
        if saved_as == loaded_as:
            load(target, path)  # each loads as itself on the backbone it was saved on
            continue
        other, want = TYPES[saved_as], TYPES[loaded_as]
        with pytest.raises(AdapterLoadError, match=(
            rf"{re.escape(str(path / CONFIG_NAME))} holds a {other.label} \('{saved_as}'\); load it with "
            rf"{re.escape(other.loader)}, not a {want.label} \(adapter_type '{loaded_as}'\)"
        )):
            load(target, path)
        assert not has_lora(target)  # refused before anything was injected, hooked or copied
        assert all(not m._forward_pre_hooks and not m._forward_hooks for m in target.modules())
        assert target.state_dict().keys() == before.keys()
        assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())


def _rebind(directory: Path, edit: Callable[[dict], None]) -> None:
    """Edit the config; the weights keep the copy they were saved with."""
    cfg = json.loads((directory / CONFIG_NAME).read_text())
    edit(cfg)
    (directory / CONFIG_NAME).write_text(json.dumps(cfg, indent=2))


@pytest.mark.parametrize(("name", "key", "edit"), [
    ("lora", "lora.r", lambda c: c["lora"].update(r=4)),
    ("mpmm_attn", "length", lambda c: c.update(length=3)),
])
def test_lora_and_attention_adapters_refuse_an_edited_config(saved, tmp_path, name, key, edit):
    backbone, paths = saved
    directory = tmp_path / name
    directory.mkdir()
    for f in (CONFIG_NAME, WEIGHTS_NAME):
        (directory / f).write_bytes((paths[name] / f).read_bytes())
    _rebind(directory, edit)
    with pytest.raises(AdapterLoadError, match=rf"{CONFIG_NAME} does not match the weights .*{WEIGHTS_NAME}: "
                       rf"key '{re.escape(key)}' is \d, the weights were saved with \d.*edited after saving"):
        LOADERS[name](copy.deepcopy(backbone), directory)


@pytest.mark.parametrize("name", ["lora", "mpmm_attn"])
def test_lora_and_attention_adapters_refuse_corrupt_weights(saved, tmp_path, name):
    backbone, paths = saved
    directory = tmp_path / name
    directory.mkdir()
    (directory / CONFIG_NAME).write_bytes((paths[name] / CONFIG_NAME).read_bytes())
    blob = bytearray((paths[name] / WEIGHTS_NAME).read_bytes())
    blob[-1] ^= 0xFF  # a flipped bit in the last tensor's data
    (directory / WEIGHTS_NAME).write_bytes(bytes(blob))
    with pytest.raises(AdapterLoadError, match=rf"{WEIGHTS_NAME} is corrupt or was edited after saving: tensor "):
        LOADERS[name](copy.deepcopy(backbone), directory)
