"""Each recipe section checks itself when it is made (from a file, by hand or by
``dataclasses.replace``), and ``[data] seed`` alone seeds the synthetic generator: a ``seed`` in
``[data.synthetic]`` once replaced it silently while ``[pretrain] checkpoint``'s ``{seed}`` still
named the file of the other seed."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from _helpers import tiny_recipe_dict

from promptkit.data import make_synthetic_mosi
from promptkit.recipes import (
    BackboneSection,
    DataSection,
    EvalSection,
    PromptSection,
    RecipeError,
    StageSection,
    from_dict,
    load_recipe_data,
)

SIZES, SEQ = (8, 4, 4), (3, 3, 3)


def _data(**data):
    return tiny_recipe_dict(sizes=SIZES, seq_lens=SEQ, data=data)


def test_a_seed_in_data_synthetic_is_refused_naming_data_seed():
    raw = _data(seed=1)
    raw["data"]["synthetic"]["seed"] = 3
    with pytest.raises(RecipeError, match=r"recipe <dict>: \[data.synthetic\] seed = 3 is refused: .*set \[data\] seed "
                                          r"instead"):
        from_dict(raw)
    with pytest.raises(ValueError, match=r"\[data.synthetic\] seed"):
        dataclasses.replace(from_dict(_data()).data, synthetic={"seed": 3})


def test_data_seed_alone_drives_the_generator():
    seq = dict(zip(("text", "audio", "vision"), SEQ))
    for seed in (0, 3):
        data = load_recipe_data(from_dict(_data(seed=seed)))
        want = make_synthetic_mosi(seed=seed, sizes=SIZES, seq_lens=seq)
        for split in ("train", "valid", "test"):
            for m in ("text", "audio", "vision"):
                assert torch.equal(data.splits[split].features[m], want.splits[split].features[m])
    a, b = (load_recipe_data(from_dict(_data(seed=s))) for s in (0, 3))
    assert not torch.equal(a.splits["train"].features["text"], b.splits["train"].features["text"])


@pytest.mark.parametrize("make, message", [
    (lambda: StageSection(lr=0.0), r"lr must be > 0, got 0.0"),
    (lambda: StageSection(epochs="3"), r"epochs must be an integer, got '3'"),
    (lambda: StageSection(grad_clip=float("nan")), r"grad_clip must be a finite number"),
    (lambda: StageSection(log_with=["cvs"]), r"log_with: unknown tracker 'cvs'"),
    (lambda: PromptSection(eta=1.5), r"eta must lie in \[0, 1\], got 1.5"),
    (lambda: PromptSection(methods=[]), r"at least one method"),
    (lambda: EvalSection(missing_rates=[0.2, 1.2]), r"missing_rates must lie in \[0, 1\], got \[1.2\]"),
    (lambda: DataSection(source="file", sizes={"train": 2}), r"sizes applies to synthetic data only"),
    (lambda: DataSection(sizes={"dev": 2}), r"unknown split\(s\) \['dev'\]"),
    (lambda: DataSection(metric="mosei2"), r"did you mean 'mosei'\?"),
    (lambda: BackboneSection(name="mult", factory="pkg.mod:build"), r"sets both name 'mult' and factory"),
    (lambda: BackboneSection(factory="no colon"), r"factory 'no colon': must have the form"),
])
def test_a_section_checks_itself_when_made(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_section_widens_ints_and_a_replace_is_checked_too():
    assert StageSection(lr=1).lr == 1.0 and isinstance(StageSection(lr=1).lr, float)
    with pytest.raises(ValueError, match=r"epochs must be >= 1, got 0"):
        dataclasses.replace(StageSection(), epochs=0)


def test_the_reader_names_the_file_and_the_table_of_a_sections_error():
    with pytest.raises(RecipeError, match=r"recipe r\.toml: \[pretrain\] lr must be > 0, got 0.0"):
        from_dict(tiny_recipe_dict(pretrain={"lr": 0.0}), source="r.toml")
    with pytest.raises(RecipeError, match=r"recipe <dict>: \[data\] modalities and \[data.synthetic\] modalities"):
        from_dict({"data": {"modalities": ["text"], "synthetic": {"modalities": ["text"]}}})
    with pytest.raises(RecipeError, match=r"recipe <dict>: \[data.synthetic\] options are set but source is 'file'"):
        from_dict({"data": {"source": "file", "synthetic": {"version": 1}}})
