"""MPMM: one prompt set per missing case, picked by each sample's case, growing as 2**M - 1."""

from __future__ import annotations

import pytest
import torch
from _helpers import tiny_recipe_dict
from _toy import ToyMSA, toy_inputs, toy_spec

import promptkit
from promptkit import ModalitySet, PrompterConfig
from promptkit.evaluation import evaluate_protocol
from promptkit.prompter import AdapterLoadError
from promptkit.methods import get_method
from promptkit.methods.mpmm import PerCasePrompter, PerCaseTypePrompts, per_case_prompt_parameters
from promptkit.recipes import from_dict, load_recipe_data
from promptkit.train.pretrain import pretrain

PER_CASE = PrompterConfig(generative=False, signal=False, type=True, prompt_length=3)


def _dims(m: int) -> dict[str, int]:
    return {f"m{i}": 3 + i for i in range(m)}


def test_each_sample_gets_the_prompt_set_of_its_case():
    dims = _dims(3)
    prompter = PerCasePrompter(ToyMSA(dims), hooks=toy_spec(list(dims)), config=PER_CASE)
    assert isinstance(prompter.type_prompts, PerCaseTypePrompts) and prompter.signal_prompts is None
    ms = ModalitySet(list(dims))
    ids = torch.arange(len(ms.cases))  # every case once, the complete one included
    seen = []
    handle = prompter.backbone.enc["m0"].register_forward_pre_hook(lambda mod, args, kw: seen.append(args[0].clone()),
                                                                   with_kwargs=True)
    prompter(**toy_inputs(dims, batch=len(ids)), mask=ms.masks_from_case_ids(ids))
    handle.remove()
    tokens = seen[-1][:, :3]  # the prepended tokens
    assert torch.equal(tokens, prompter.type_prompts.type_prompts[0][ids].to(tokens.dtype))


def test_prompt_sets_grow_as_two_to_the_m_minus_one_and_mplmm_linearly():
    for m in (3, 5):
        dims = _dims(m)
        per_case = PerCasePrompter(ToyMSA(dims), hooks=toy_spec(list(dims)), config=PER_CASE)
        widths = per_case.type_widths
        assert per_case.prompt_parameters()["type"] == per_case_prompt_parameters(m, 3, widths) == (2**m - 1) * 3 * sum(widths)
        per_case.unwrap()


def test_a_step_changes_only_the_prompt_sets_and_the_head():
    dims = _dims(3)
    backbone = ToyMSA(dims)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    prompter = PerCasePrompter(backbone, hooks=toy_spec(list(dims)), config=PER_CASE)
    opt = torch.optim.SGD([p for p in prompter.parameters() if p.requires_grad], lr=0.1)
    mask = ModalitySet(list(dims)).sample_masks(6, 0.7, torch.Generator().manual_seed(0))
    prompter(**toy_inputs(dims), mask=mask).pow(2).mean().backward()
    opt.step()
    after = backbone.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("head.") for k in changed)


def test_mpmm_trains_saves_and_runs_through_the_protocol(tmp_path):
    recipe = from_dict(tiny_recipe_dict(sizes=(32, 16, 16), prompt={"epochs": 1, "batch_size": 16,
                                                                   "prompter": {"prompt_length": 3}}))
    data = load_recipe_data(recipe)
    pretrain(recipe, data, tmp_path / "pretrain", progress=False)
    done = get_method("mpmm")(recipe, data, tmp_path / "pretrain" / "backbone.safetensors", tmp_path / "mpmm",
                              progress=False)
    assert done.info["prompt_sets"] == 7 and done.trainable_params > 0
    res = evaluate_protocol(done.forward, data.splits["test"], "mosi", rates=())
    assert len(res.case_names) == 6
    bare = done.modules["prompter"].unwrap()
    again = PerCasePrompter.from_pretrained(bare, tmp_path / "mpmm" / "adapter")
    assert isinstance(again.type_prompts, PerCaseTypePrompts)
    again.unwrap()
    with pytest.raises(AdapterLoadError, match="MPMM per-case prompt adapter"):  # not an MPLMM adapter
        promptkit.MissingModalityPrompter.from_pretrained(bare, tmp_path / "mpmm" / "adapter")
