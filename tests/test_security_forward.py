"""A forward's output and batch are checked where they enter (issue 24, item 12).

MMIM on finite inputs of 1e20 returns NaN: training, validation and the evaluation protocol each
refuse it, naming the backbone, where it ran and the samples, instead of a NaN loss without a name
or a metrics error. A batch of 0 samples is a clear error for every registered backbone (UniMSE
raised an internal reshape error, the others returned an empty output)."""

from __future__ import annotations

import pytest
import torch

import promptkit
from backbones import create_backbone, list_backbones
from promptkit.data import make_synthetic_mosi
from promptkit.evaluation import (
    evaluate_protocol,
    prompted_forward,
    zero_filled_forward,
)
from promptkit.recipes import StageSection
from promptkit.train import NonFiniteLossError, evaluate, fit
from promptkit.train.losses import NonFiniteOutputError

SMALL = {"text": 12, "audio": 5, "vision": 7}
SHIPPED = {"mctn", "misa", "mmim", "mmin", "mult", "unimse"}


# --- empty batches -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", sorted(SHIPPED | set(list_backbones())))  # a shipped one unregistered fails
def test_every_registered_backbone_refuses_an_empty_batch(name, mode):
    """Before: UniMSE "cannot reshape tensor of 0 elements"; the others returned (0, out_dim)."""
    model = create_backbone(name, feature_dims=SMALL)
    getattr(model, mode)()
    x = {m: torch.randn(0, 6, d) for m, d in SMALL.items()}
    with pytest.raises(ValueError, match=rf"{type(model).__name__}: the batch is empty \(text features have "
                                         r"shape \(0, 6, 12\)\)"):
        model(**x)


def test_a_prompter_passes_the_empty_batch_error_through():
    prompter = promptkit.wrap(create_backbone("unimse", feature_dims=SMALL))
    with pytest.raises(ValueError, match="UniMSE: the batch is empty"):
        prompter(**{m: torch.randn(0, 6, d) for m, d in SMALL.items()}, mask=torch.ones(0, 3, dtype=torch.bool))


# --- non-finite outputs --------------------------------------------------------------------------
def _data(scale: dict[str, float]):
    """Synthetic MOSI-shaped data (48/16/16) with each named split's features multiplied by ``scale[split]``."""
    data = make_synthetic_mosi(seed=0, sizes=(48, 16, 16), seq_lens={"text": 4, "audio": 4, "vision": 4},
                               feature_dims=SMALL)
    for split, factor in scale.items():
        for x in data.splits[split].features.values():
            x.mul_(factor)
    return data


def _mmim():
    torch.manual_seed(0)
    return create_backbone("mmim", feature_dims=SMALL)


def _stage() -> StageSection:
    return StageSection(epochs=1, batch_size=16, lr=1e-3, scheduler="plateau", grad_clip=0.8, seed=0)


def test_mmim_training_on_inputs_of_1e20_names_the_backbone_the_step_and_the_samples(tmp_path):
    """Before: "training loss is nan at epoch 1, step 1/3" with no word of which model or why."""
    with pytest.raises(NonFiniteOutputError) as e:
        fit(_mmim(), _data({"train": 1e20}), _stage(), tmp_path, progress=False)
    msg = str(e.value)
    assert msg.startswith(f"MMIM returned NaN/inf outputs at training epoch 1, step 1/3 of {tmp_path}")
    assert "16 of 16 sample(s), sample indices [" in msg and msg.endswith("last good checkpoint: none yet (failed in "
                                                                           "the first epoch)")
    assert isinstance(e.value, NonFiniteLossError)  # what fit documents for a NaN step


def test_mmim_validation_on_inputs_of_1e20_names_the_split(tmp_path):
    """Before: metrics' "pred contains 16 NaN/inf value(s)", naming neither the model nor the split."""
    with pytest.raises(NonFiniteOutputError, match=rf"MMIM returned NaN/inf outputs at the valid split of "
                                                   rf"{tmp_path}, batch 1/1: 16 of 16 sample\(s\), sample indices "
                                                   rf"\[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15\]"):
        fit(_mmim(), _data({"valid": 1e20}), _stage(), tmp_path, progress=False)


def test_evaluate_on_inputs_of_1e20_is_refused_and_finite_ones_still_score():
    data = _data({})
    out = evaluate(_mmim(), data.splits["test"], task="regression", modalities=data.modalities, metric_kind="mosi",
                   batch_size=8, device="cpu")
    assert torch.isfinite(torch.tensor(out["loss"]))
    data = _data({"test": 1e20})
    with pytest.raises(NonFiniteOutputError, match=r"MMIM returned NaN/inf outputs at evaluation, batch 1/2"):
        evaluate(_mmim(), data.splits["test"], task="regression", modalities=data.modalities, metric_kind="mosi",
                 batch_size=8, device="cpu")


def test_the_protocol_on_inputs_of_1e20_names_the_backbone_the_setting_and_the_samples():
    """Before: metrics' "pred contains ... NaN/inf value(s)" (the zero-filled MMIM), no model named."""
    test = _data({"test": 1e20}).splits["test"]
    mmim = _mmim().eval()
    with pytest.raises(NonFiniteOutputError, match=r"^MMIM returned NaN/inf outputs at evaluation of setting "
                                                   r"\{\w+\}, samples 0\.\.7: \d+ of 8 sample\(s\), sample "
                                                   r"indices \[\d"):
        evaluate_protocol(zero_filled_forward(mmim, test.modalities), test, "mosi", rates=(), batch_size=8)
    with pytest.raises(NonFiniteOutputError, match=r"^MMIM in MissingModalityPrompter returned NaN/inf"):
        evaluate_protocol(prompted_forward(promptkit.wrap(mmim).eval()), test, "mosi", rates=(), batch_size=16)

