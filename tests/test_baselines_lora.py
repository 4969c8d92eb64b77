"""LoRA through peft on the frozen backbone: target selection, training only LoRA (+ head), the
adapter file, its round trip, and the ``lora`` / ``lora_mplmm`` methods through the protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backbones import create_backbone
from promptkit.adapter_files import WEIGHTS_NAME
from promptkit.backbone_files import build_backbone, load_backbone, save_backbone
from promptkit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from promptkit.data import make_synthetic_mosi
from promptkit.evaluation import evaluate_protocol
from promptkit.methods import get_method, list_methods
from promptkit.methods.lora import (
    inject_lora,
    load_lora_adapter,
    lora_parameters,
    lora_target_modules,
    save_lora_adapter,
)
from promptkit.recipes import from_dict

SEQ = {"text": 4, "audio": 5, "vision": 6}
TINY = {"d_model": 8, "num_heads": 2, "layers": 1}


def _tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone("mult", **TINY).eval()


def _inputs(batch: int = 3) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    dims = create_backbone("mult", **TINY).feature_dims
    return {m: torch.randn(batch, SEQ[m], d, generator=gen) for m, d in dims.items()}


def test_target_modules_exclude_the_head_and_layers_whose_forward_never_runs():
    model = _tiny()
    targets = lora_target_modules(model)
    assert targets == lora_target_modules(model)  # deterministic
    assert not any(t == "head" or t.startswith("head.") for t in targets)
    assert all(isinstance(model.get_submodule(t), torch.nn.Linear) for t in targets)
    order = [n for n, _ in model.named_modules()]
    assert targets == sorted(targets, key=order.index)
    # self-attention calls the fused q/k/v projection; cross-attention reads its weight slices directly
    assert "mem.text.layers.0.attn.in_proj" in targets
    assert "cross.text_from_audio.layers.0.attn.in_proj" not in targets
    assert "cross.text_from_audio.layers.0.fc1" in targets
    # PointwiseConv1d's constructor is not nn.Conv1d's: peft cannot build its low-rank pair
    assert not any(t.startswith("proj.") for t in targets)
    assert "head.proj1" in lora_target_modules(model, {"features": {m: m for m in SEQ}, "trainable": []})


def test_injection_keeps_outputs_and_the_global_rng_and_is_seeded():
    x = _inputs()
    model = _tiny()
    before = model(**x)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    inject_lora(model, r=4, seed=11)
    assert torch.equal(torch.rand(3), expected)
    torch.testing.assert_close(model(**x), before, rtol=0, atol=0)  # B starts at zero
    other = inject_lora(_tiny(), r=4, seed=11)
    a, b = lora_parameters(model), lora_parameters(other)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    third = lora_parameters(inject_lora(_tiny(), r=4, seed=12))
    assert any(not torch.equal(a[k], third[k]) for k in a if "lora_A" in k)
    with pytest.raises(ValueError, match="already holds LoRA"):
        inject_lora(model)
    with pytest.raises(ValueError, match="does not exist"):
        inject_lora(_tiny(), target_modules=["nope"])


def test_one_training_step_changes_only_lora_and_head_tensors():
    model = _tiny()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    inject_lora(model, r=4, dropout=0.1, seed=0)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == {n for n in names if "lora_" in n or n.startswith("head.")}
    assert any("lora_A" in n for n in names) and any(n.startswith("head.") for n in names)
    opt = torch.optim.SGD(trainable, lr=0.5)
    for _ in range(2):  # the first step moves B off zero, the second reaches A through it
        opt.zero_grad()
        model(**_inputs()).pow(2).mean().backward()
        opt.step()
    after = model.state_dict()
    params = dict(model.named_parameters())
    for key, value in base.items():
        if key.startswith("head."):
            continue
        mapped = key if key in after else key.rsplit(".", 1)[0] + ".base_layer." + key.rsplit(".", 1)[1]
        assert torch.equal(after[mapped], value), key  # frozen base weights: bit-identical
        assert mapped not in params or not params[mapped].requires_grad, key
    assert any(not torch.equal(after[k], base[k]) for k in base if k.startswith("head."))
    lora = lora_parameters(model)
    assert all(p.grad is not None for p in lora.values())
    assert any(p.abs().sum() > 0 for k, p in lora.items() if "lora_B" in k)


def test_adapter_holds_only_lora_and_head_and_round_trips(tmp_path):
    x = _inputs()
    model = inject_lora(_tiny(), r=4, seed=3)
    with torch.no_grad():  # a trained-looking adapter: nonzero B, a moved head
        for name, p in model.named_parameters():
            if "lora_B" in name or name.startswith("head."):
                p.add_(0.05 * torch.randn_like(p))
    path = save_lora_adapter(model, tmp_path / "lora")
    tensors, meta = load_checkpoint(path / WEIGHTS_NAME, kind="lora-adapter")
    assert tensors and all("lora_" in k or k.startswith("head.") for k in tensors)
    assert any(k.startswith("head.") for k in tensors)
    assert meta["config"]["lora"]["r"] == 4 and meta["config"]["lora"]["target_modules"] == lora_target_modules(_tiny())

    loaded = load_lora_adapter(_tiny(), path).eval()
    torch.testing.assert_close(loaded(**x), model.eval()(**x), rtol=0, atol=0)
    assert not torch.equal(loaded(**x), _tiny()(**x))

    with pytest.raises(CheckpointError, match="another backbone"):
        load_lora_adapter(create_backbone("mult", d_model=10, num_heads=2, layers=1), path)
    torch.manual_seed(99)
    other_weights = create_backbone("mult", **TINY)
    with pytest.raises(CheckpointError, match="other pre-trained weights"):
        load_lora_adapter(other_weights, path)
    with pytest.raises(ValueError, match="already holds LoRA"):
        load_lora_adapter(loaded, path)


def test_a_single_file_adapter_of_older_promptkit_still_loads(tmp_path):
    """Older promptkit wrote one ``lora_adapter.safetensors`` whose meta is the config: it loads, as
    the file or the folder holding it, through the same backbone and weights checks."""
    x = _inputs()
    model = inject_lora(_tiny(), r=4, seed=3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05 * torch.randn_like(p))
    tensors, meta = load_checkpoint(save_lora_adapter(model, tmp_path / "new") / WEIGHTS_NAME, kind="lora-adapter")
    old_meta = {k: v for k, v in meta["config"].items() if k not in ("format", "adapter_type", "promptkit_version")}
    legacy = save_checkpoint(tmp_path / "old" / "lora_adapter.safetensors", tensors, old_meta, kind="lora-adapter")
    for where in (legacy, legacy.parent):
        torch.testing.assert_close(load_lora_adapter(_tiny(), where).eval()(**x), model.eval()(**x), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="another backbone"):
        load_lora_adapter(create_backbone("mult", d_model=10, num_heads=2, layers=1), legacy)
    torch.manual_seed(99)
    with pytest.raises(CheckpointError, match=r"lora_adapter\.safetensors was trained on other pre-trained weights"):
        load_lora_adapter(create_backbone("mult", **TINY), legacy)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    raw = {
        "backbone": {"name": "mult", "config": TINY},
        "data": {"source": "synthetic", "sizes": {"train": 12, "valid": 6, "test": 6}, "synthetic": {"seq_lens": SEQ}},
        "pretrain": {"epochs": 1, "batch_size": 6},
        "prompt": {"epochs": 1, "batch_size": 6, "eta": 0.7, "prompter": {"prompt_length": 2}},
    }
    recipe = from_dict(raw)
    data = make_synthetic_mosi(sizes=(12, 6, 6), seq_lens=SEQ)
    root = tmp_path_factory.mktemp("lora")
    torch.manual_seed(0)
    file = save_backbone(build_backbone(recipe, data), root / "backbone.safetensors", "mult")
    return recipe, data, file, root


@pytest.mark.parametrize("name", ["lora", "lora_mplmm"])
def test_lora_methods_run_through_the_protocol(setup, name):
    recipe, data, file, root = setup
    assert name in list_methods()
    trained = get_method(name)(recipe, data, file, root / name, device="cpu", progress=False, evaluate_test=False)
    counts = trained.info["counts"]
    assert trained.name == name and counts["lora"] > 0 and counts["head"] > 0
    assert trained.trainable_params == counts["lora"] + counts["head"] + counts["prompts"]
    assert (counts["prompts"] > 0) == (name == "lora_mplmm")
    tensors, _ = load_checkpoint(Path(trained.info["adapter"]) / WEIGHTS_NAME, kind="lora-adapter")
    assert all("lora_" in k or k.startswith("head.") for k in tensors)
    result = evaluate_protocol(trained.forward, data.splits["test"], recipe.data.metric, rates=(0.5,), batch_size=6)
    assert "complete" in result.cases and 0.5 in result.rates
    assert all(v == v for v in result.cases["avg"].values())
    # the stage trained the LoRA tensors (B left zero) and left every base weight as pre-trained
    backbone = trained.modules["prompter"].backbone
    assert any(p.abs().sum() > 0 for k, p in lora_parameters(backbone).items() if "lora_B" in k)
    pretrained = load_backbone(file).state_dict()
    state = {k.replace(".base_layer", ""): v for k, v in backbone.state_dict().items() if "lora_" not in k}
    assert state.keys() == pretrained.keys()
    assert all(torch.equal(state[k].cpu(), v) for k, v in pretrained.items() if not k.startswith("head."))
    assert any(not torch.equal(state[k].cpu(), v) for k, v in pretrained.items() if k.startswith("head."))
