"""promptkit.compile: a compiled prompter keeps its hooks and matches eager, outputs and gradients."""

from __future__ import annotations

import os

import pytest
import torch

import promptkit
from backbones.mult import MulT
from promptkit.compile import compile_available, compile_model, is_compiled
from promptkit.modalities import ModalitySet

DIMS = {"text": 12, "audio": 5, "vision": 7}


@pytest.fixture(autouse=True)
def _reset_dynamo():
    """Each test traces afresh: TorchDynamo's caches are cleared after it."""
    yield
    torch._dynamo.reset()


def _pair(seed: int = 0):
    """An eager prompter and an identical second one (same weights) to compile."""
    out = []
    for _ in range(2):
        torch.manual_seed(seed)
        out.append(promptkit.wrap(MulT(feature_dims=DIMS, d_model=8, num_heads=2, layers=1)))
    return out


def _inputs(batch: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(batch, t, d, generator=g) for (m, d), t in zip(DIMS.items(), (6, 9, 11))}
    # different masks, each with every modality missing somewhere (as at eta = 0.7 and batch 64),
    # so the graph sees the same requires_grad pattern and traces once
    masks = [ModalitySet().masks_from_case_ids((torch.arange(batch) + s) % 7) for s in range(3)]
    return x, masks


def _no_dropout(model) -> None:
    for module in model.backbone.modules():
        for attr in ("dropout", "relu_dropout", "res_dropout", "embed_dropout"):
            if isinstance(getattr(module, attr, None), float):
                setattr(module, attr, 0.0)


def _check_same(backend: str, modes: bool = False) -> None:
    """Training mode without dropout (one graph): outputs for several masks, then gradients.
    ``modes`` adds eval mode and prompts_disabled(), one more graph each."""
    ok, why = compile_available(backend)
    if not ok:
        pytest.skip(why)
    eager, compiled = _pair()
    compile_model(compiled, backend=backend)
    assert is_compiled(compiled) and not is_compiled(eager)
    x, masks = _inputs()
    for model in (eager, compiled):
        _no_dropout(model)
        model.train()
    for mask in masks:  # a new mask each call: the hooks must read it, not a traced constant
        torch.testing.assert_close(compiled(**x, mask=mask), eager(**x, mask=mask), rtol=1e-5, atol=1e-5)
    for model in (eager, compiled):
        model(**x, mask=masks[2]).pow(2).mean().backward()
    grads = {n: p.grad for n, p in eager.named_parameters() if p.requires_grad}
    for n, p in compiled.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6, msg=n)
    if modes:
        eager.eval()
        compiled.eval()
        with torch.no_grad():
            with eager.prompts_disabled(), compiled.prompts_disabled():
                torch.testing.assert_close(compiled(**x, mask=masks[0]), eager(**x, mask=masks[0]), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(compiled(**x, mask=masks[1]), eager(**x, mask=masks[1]), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_compiled_prompter_matches_eager_and_keeps_its_hooks():
    """TorchDynamo, the stage that traces the hooks into the graph, without code generation
    (about 10 s here: tracing MulT's nine transformers once)."""
    _check_same("eager")


@pytest.mark.skipif(
    not os.environ.get("PROMPTKIT_TEST_INDUCTOR"),
    reason="AOTAutograd + inductor take minutes on 2 CPU cores; set PROMPTKIT_TEST_INDUCTOR=1",
)
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_fully_compiled_prompter_matches_eager(backend):
    _check_same(backend, modes=True)


def test_compile_model_refuses_an_unavailable_backend(monkeypatch):
    import promptkit.compile as pc

    monkeypatch.setattr(pc.shutil, "which", lambda _: None)
    assert pc.compile_available("inductor")[0] is False
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        compile_model(MulT(layers=1))


def test_prompt_stage_compiles_the_prompter_and_saves_the_same_adapter(tmp_path):
    """``[prompt] compile = "eager"`` through prompt_tune on the toy backbone: the compiled run
    trains the prompts through the hooks exactly as eager does, and saves the same keys."""
    from _toy import ToyMSA, toy_spec

    from promptkit.checkpoint import load_checkpoint
    from promptkit.data import make_synthetic_mosi
    from promptkit.recipes import from_dict
    from promptkit.train.prompt_stage import ADAPTER_DIR, prompt_tune

    dims = {"text": 6, "audio": 3, "vision": 4}
    data = make_synthetic_mosi(seed=0, sizes=(32, 16, 16), seq_lens={m: 4 for m in dims}, feature_dims=dims)
    runs = {}
    for backend in (False, "eager"):
        recipe = from_dict({"prompt": {"epochs": 1, "batch_size": 16, "compile": backend,
                                       "prompter": {"prompt_length": 2, "mmgm_dim": 8, "mmgm_heads": 2}}})
        torch.manual_seed(0)
        backbone = ToyMSA(dims)
        out = tmp_path / str(backend)
        prompter, result = prompt_tune(recipe, data, backbone, out, hooks=toy_spec(list(dims)), device="cpu",
                                       progress=False)
        adapter = {}
        for f in sorted((out / ADAPTER_DIR).glob("*.safetensors")):
            adapter[f.name] = sorted(load_checkpoint(f)[0])
        runs[backend] = (prompter, result, adapter)
    (eager, eager_res, eager_adapter), (compiled, res, adapter) = runs[False], runs["eager"]
    assert is_compiled(compiled) and not is_compiled(eager)
    assert list(compiled.state_dict()) == list(eager.state_dict())
    assert adapter == eager_adapter and adapter
    # the hooks ran inside the compiled graph: same losses, and the prompts trained the same way
    assert res.history[0]["train_loss"] == pytest.approx(eager_res.history[0]["train_loss"], rel=1e-5)
    assert res.test == pytest.approx(eager_res.test, rel=1e-5)
    for (n, p), q in zip(compiled.named_parameters(), eager.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=n)
