"""``features`` entries that name a module: token-id text read at its encoder's output, a GRU's
``(output, h)`` read with ``index = 0``. MMGM completes the features there, the zero-fill control
zeroes them there, and a missing sample's raw input (its token ids) never changes the output;
through ``wrap``, ``prompt_tune``, the adapter files, the baselines and ``promptkit run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _helpers import tiny_recipe_dict, to_toml, write_recipe
from _token_backbone import build, hooks

from promptkit import MissingModalityPrompter, PrompterConfig, wrap
from promptkit.adapter_files import AdapterLoadError
from promptkit.evaluation import zero_filled_forward
from promptkit.feature_points import check_feature_data, extractor_means, zero_filled_inputs, zero_rows
from promptkit.hookspec import FeatureModule, HookSpec
from promptkit.methods.lower_bound import lb_forward
from promptkit.methods.substitution import substituted_forward
from promptkit.modalities import ModalitySet
from promptkit.prompter import HookError

TESTS = Path(__file__).resolve().parent
MODS = ("text", "audio", "vision")
DIMS = {"text": 12, "audio": 5, "vision": 6}  # text: the vocabulary size
CFG = PrompterConfig(prompt_length=2, mmgm_dim=8, mmgm_heads=2)
# text missing in rows 0 and 2, audio in rows 1 and 2, everything in row 3
MASK = torch.tensor([[False, True, True], [True, False, True], [False, False, True], [True, True, True]])


def batch(seed: int = 0, n: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"text": torch.randint(0, DIMS["text"], (n, 5), generator=g), "audio": torch.randn(n, 4, 5, generator=g),
            "vision": torch.randn(n, 3, 6, generator=g)}


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build(DIMS, dim=8)


def prompter(spec: dict | None = None, config: PrompterConfig = CFG, **kw) -> MissingModalityPrompter:
    return wrap(model(), hooks=spec or hooks(), config=config, example=batch(), **kw).eval()


def inputs_of(module: torch.nn.Module) -> tuple[list, torch.utils.hooks.RemovableHandle]:
    seen: list = []
    return seen, module.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))


def with_missing_rows_changed(x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Other token ids for the texts that are missing, other audio where it is missing."""
    y = {m: v.clone() for m, v in x.items()}
    y["text"][~MASK[:, 0]] = (y["text"][~MASK[:, 0]] + 5) % DIMS["text"]
    y["audio"][~MASK[:, 1]] = 7.0
    return y


def test_a_module_entry_round_trips_and_a_string_entry_stays_a_keyword():
    spec = HookSpec.from_dict(hooks())
    assert spec.feature_modules == {"text": FeatureModule("text_encoder", arg="text_ids"),
                                    "audio": FeatureModule("acoustic", index=0)}
    assert spec.argument("text") == "text_ids" and spec.argument("audio") == "audio" and spec.argument("vision") == "vision"
    d = spec.to_dict()
    assert d["features"]["vision"] == "vision"
    assert d["features"]["text"] == {"path": "text_encoder", "layout": "BTD", "arg": "text_ids", "index": None,
                                     "key": None, "width": None}
    assert HookSpec.from_dict(json.loads(json.dumps(d))) == spec
    assert set(spec.kwargs(batch())) == {"text_ids", "audio", "vision"}
    strings = HookSpec(features={"text": "lang", "audio": "audio"})
    assert strings.feature_modules == {} and strings.to_dict()["features"] == {"text": "lang", "audio": "audio"}
    with pytest.raises(ValueError, match="index or key, not both"):
        HookSpec(features={"text": {"path": "enc", "index": 0, "key": "h"}})
    with pytest.raises(ValueError, match="layout must be one of"):
        HookSpec(features={"text": {"path": "enc", "layout": "BD"}})
    with pytest.raises(ValueError, match="same forward keyword"):
        HookSpec(features={"text": {"path": "enc", "arg": "audio"}, "audio": "audio"})


def test_the_ids_of_a_missing_text_never_change_the_output():
    p = prompter()
    x = batch()
    out = p(**x, mask=MASK)
    assert torch.equal(out, p(**with_missing_rows_changed(x), mask=MASK))
    with p.prompts_disabled():
        assert torch.equal(p(**x, mask=MASK), p(**with_missing_rows_changed(x), mask=MASK))
    bare = zero_filled_forward(p.backbone, MODS, hooks())
    assert torch.equal(bare(x, MASK), bare(with_missing_rows_changed(x), MASK))
    # the ids of an available text do reach the output
    y = {m: v.clone() for m, v in x.items()}
    y["text"][1] = (y["text"][1] + 5) % DIMS["text"]
    assert not torch.allclose(out[1], p(**y, mask=MASK)[1])


def test_mmgm_output_is_what_the_extractors_return_and_no_extractor_runs_twice():
    p = prompter()
    x = batch()
    p(**x, mask=MASK)  # the first forward also checks the hooks
    generated: list = []
    h_mmgm = p.mmgm.register_forward_hook(lambda mod, args, out: generated.append(out))
    at_t, h_t = inputs_of(p.backbone.proj_t)
    at_a, h_a = inputs_of(p.backbone.proj_a)
    p.backbone.text_encoder.calls = 0
    p(**x, mask=MASK)
    for h in (h_mmgm, h_t, h_a):
        h.remove()
    assert p.backbone.text_encoder.calls == 1  # the capture pass; the prompted pass reuses its output
    assert generated[0]["text"].shape == (4, 5, 8) and generated[0]["audio"].shape == (4, 4, 8)
    # proj_t runs in the capture pass too (before the GRU); that pass stops after the GRU, the last extractor
    assert len(at_t) == 2 and len(at_a) == 1
    missing_t, missing_a = ~MASK[:, 0], ~MASK[:, 1]
    assert torch.allclose(at_t[-1][missing_t], generated[0]["text"][missing_t])
    assert torch.allclose(at_a[-1][missing_a], generated[0]["audio"][missing_a])
    with torch.no_grad():  # an available text is its encoder's own output
        real = p.backbone.text_encoder(x["text"])
    assert torch.allclose(at_t[-1][~missing_t], real[~missing_t])
    p.backbone.text_encoder.calls = 0
    p(**x)  # a complete batch: one plain forward
    assert p.backbone.text_encoder.calls == 1


def test_the_zero_fill_control_zeroes_at_the_extractor_output():
    m = model()
    x = batch()
    p = wrap(m, hooks=hooks(), config=PrompterConfig(prompt_length=2, generative=False), example=batch()).eval()
    p.verify_hooks(x)
    at_t, h_t = inputs_of(m.proj_t)
    ids, h_ids = inputs_of(m.text_encoder)
    at_a, h_a = inputs_of(m.proj_a)
    with p.prompts_disabled():
        p(**x, mask=MASK)
    p(**x, mask=MASK)  # MMGM off: the prompted forward zero-fills there too
    p.unwrap()
    zero_filled_forward(m, MODS, hooks())(x, MASK)
    assert len(at_t) == len(at_a) == len(ids) == 3
    for h in (h_t, h_ids, h_a):
        h.remove()
    for seen_t, seen_a, seen_ids in zip(at_t, at_a, ids):
        assert seen_t[~MASK[:, 0]].abs().sum() == 0 and seen_t[MASK[:, 0]].abs().sum() > 0
        assert seen_a[~MASK[:, 1]].abs().sum() == 0 and seen_a[MASK[:, 1]].abs().sum() > 0
        assert seen_ids[~MASK[:, 0]].abs().sum() == 0  # the raw ids of a missing text are zeroed too
        assert torch.equal(seen_ids[MASK[:, 0]], x["text"][MASK[:, 0]])


def test_a_tuple_returning_extractor_needs_its_index():
    spec = hooks()
    del spec["features"]["audio"]["index"]
    p = wrap(model(), hooks=spec, config=CFG, example=batch())
    with pytest.raises(HookError, match=r"'acoustic' returned a tuple.*set index= or key="):
        p(**batch(), mask=MASK)


def test_widths_are_measured_on_an_example_else_refused_at_wrap_time():
    with pytest.raises(ValueError, match=r"width of feature module 'text_encoder' \(text\) \(TextEncoder\).*width= in "
                                         r"its FeatureModule, or pass example="):
        wrap(model(), hooks=hooks(), config=CFG)
    spec = hooks()
    spec["features"]["text"]["width"] = 8
    assert wrap(model(), hooks=spec, config=CFG).mmgm_dims == {"text": 8, "audio": 8, "vision": 6}
    # a signal target on a custom module without a width attribute: measured, else refused naming it
    spec = hooks()
    spec["signal"]["text"] = "text_encoder"
    with pytest.raises(ValueError, match=r"signal target 'text_encoder' \(text\).*width= in its SignalTarget"):
        wrap(model(), hooks=spec, config=CFG)
    p = wrap(model(), hooks=spec, config=CFG, example=batch())
    assert p.signal_widths["text"] == 8 and p.hook_widths.features == {"text": 8, "audio": 8}


def test_the_adapter_records_the_entry_and_its_widths_and_loads_without_a_probe(tmp_path):
    p = prompter()
    with torch.no_grad():
        for param in p.mmgm.parameters():
            param.add_(0.01)
    out = p(**batch(1), mask=MASK)
    p.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "promptkit_config.json").read_text())
    assert saved["hook_spec"]["features"]["audio"]["index"] == 0
    assert saved["widths"] == {"signal": {"text": 8, "audio": 8, "vision": 8}, "type": [8],
                               "features": {"text": 8, "audio": 8}}
    backbone = p.unwrap()
    again = MissingModalityPrompter.from_pretrained(backbone, tmp_path).eval()  # no example: the file has the widths
    assert torch.equal(again(**batch(1), mask=MASK), out)
    again.unwrap()
    given = MissingModalityPrompter.from_pretrained(backbone, tmp_path, hooks=hooks()).eval()  # the spec as written
    assert torch.equal(given(**batch(1), mask=MASK), out)
    given.unwrap()
    other = hooks()
    other["features"]["audio"]["index"] = 1
    with pytest.raises(AdapterLoadError, match=r"hook_spec\.features\.audio\.index' is 1, the weights were saved with 0"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path, hooks=other)


def test_reconstruction_loss_reads_the_dropped_modules_real_features():
    p = prompter(config=PrompterConfig(prompt_length=2, mmgm_dim=8, mmgm_heads=2, reconstruction_weight=1.0)).train()
    p(**batch(), mask=MASK)
    loss = p.auxiliary_loss()
    assert loss is not None and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert p.mmgm.out_maps["text"][-1].weight.grad.abs().sum() > 0


def test_zero_fill_helpers_on_raw_inputs():
    keep = torch.tensor([True, False])
    x, lengths = torch.ones(2, 3, dtype=torch.long), torch.tensor([3, 2])
    seq, kept = zero_rows((x, lengths), keep)
    assert seq.tolist() == [[1, 1, 1], [0, 0, 0]] and kept is lengths  # lengths: shape, not content
    f = {"vision": torch.ones(2, 2, 3)}
    assert torch.equal(zero_filled_inputs(None, f, keep[:, None], ("vision",))["vision"],
                       f["vision"] * keep[:, None, None])  # a string entry: as the baseline always did


def test_baselines_fill_at_the_extractor_zeros_or_its_mean_feature():
    m = model()
    x = batch()
    want = zero_filled_forward(m, MODS, hooks())(x, MASK)
    assert torch.equal(substituted_forward(m, MODS, None, hooks())(x, MASK), want)
    ms = ModalitySet(MODS)
    one_model = {c.id: m for c in [*ms.incomplete_cases, ms.complete_case]}
    assert torch.allclose(lb_forward(one_model, MODS, hooks())(x, MASK), want, atol=1e-6)
    # a mean fill: the extractors' mean features where they output, the raw mean for a keyword entry
    means = extractor_means(m, HookSpec.from_dict(hooks()), batch(2, n=10), batch_size=3)
    with torch.no_grad():
        text = m.text_encoder(batch(2, n=10)["text"])
    assert set(means) == {"text", "audio"} and torch.allclose(means["text"], text.mean(dim=(0, 1)), atol=1e-6)
    fill = {**means, "vision": torch.full((6,), 0.5)}
    at_t, h_t = inputs_of(m.proj_t)
    at_a, h_a = inputs_of(m.proj_a)
    at_v, h_v = inputs_of(m.proj_v)
    substituted_forward(m, MODS, fill, hooks())(with_missing_rows_changed(x), MASK)
    for h in (h_t, h_a, h_v):
        h.remove()
    assert torch.allclose(at_t[0][~MASK[:, 0]], means["text"].expand(2, 5, 8))
    assert torch.allclose(at_a[0][~MASK[:, 1]], means["audio"].expand(2, 4, 8))
    assert torch.equal(at_v[0], x["vision"])  # vision is available everywhere
    with pytest.raises(ValueError, match=r"fill of text has shape \(12,\); feature module 'text_encoder'"):
        substituted_forward(m, MODS, {"text": torch.zeros(12)}, hooks())(x, MASK)


def _token_recipe(**prompt) -> dict:
    recipe = tiny_recipe_dict(
        backbone={"factory": "_token_backbone:build", "config": {"dim": 8}}, sizes=(32, 16, 16), seq_lens=(4, 5, 3),
        pretrain={"epochs": 1, "batch_size": 16},
        prompt={"epochs": 2, "batch_size": 16, "prompter": {"prompt_length": 2, "mmgm_dim": 8, "mmgm_heads": 2},
                **prompt},
        eval={"missing_rates": [0.5]}, hooks=hooks(),
    )
    recipe["data"]["synthetic"].update(text="tokens", codebook_size=12)
    return recipe


def test_prompt_tune_trains_mmgm_at_the_text_encoder(tmp_path):
    from promptkit.recipes import from_dict, load_recipe_data
    from promptkit.train.prompt_stage import prompt_tune

    recipe = from_dict(_token_recipe())
    data = load_recipe_data(recipe)
    assert data.token_modalities == ("text",)
    torch.manual_seed(0)
    backbone = build(dict(data.feature_dims), dim=8)
    p, result = prompt_tune(recipe, data, backbone, tmp_path, hooks=hooks(), device="cpu", progress=False)
    example = {m: x[:4] for m, x in data.splits["train"].features.items()}
    start = MissingModalityPrompter(build(dict(data.feature_dims), dim=8), hooks=hooks(), config=p.config,
                                    feature_dims=dict(data.feature_dims), example=example).mmgm
    assert p.mmgm_dims["text"] == 8  # the encoder's output, not the vocabulary size
    assert p.mmgm.source_maps["text"][0].in_features == 8
    assert not torch.equal(p.mmgm.generative_prompts["text"], start.generative_prompts["text"])  # trained
    assert result.epochs_run == 2 and all(torch.isfinite(torch.tensor(h["train_loss"])) for h in result.history)
    saved = json.loads((tmp_path / "adapter" / "promptkit_config.json").read_text())
    assert saved["hook_spec"]["features"]["text"]["path"] == "text_encoder"
    with pytest.raises(ValueError, match=r"MMIN translates each modality's raw features.*text is token ids"):
        check_feature_data(data, hooks(), "MMIN")


@pytest.mark.slow
def test_promptkit_run_with_a_module_entry_in_hooks(tmp_path):
    recipe = write_recipe(tmp_path, to_toml({"name": "tiny-tokens", **_token_recipe(methods=["mplmm", "ms_zero", "ms_mean", "md_zero", "md_mean", "lb", "mpmm"])}))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "promptkit.cli", "run", "--recipe", str(recipe), "--out", str(out),
           "--device", "cpu", "--quiet"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "protocol.json").read_text())
    assert set(summary["results"]) == {"zero_filled", "mplmm", "ms_zero", "ms_mean", "md_zero", "md_mean", "lb",
                                         "mpmm"}
    saved = json.loads((out / "prompt" / "adapter" / "promptkit_config.json").read_text())
    assert saved["hook_spec"]["features"]["text"] == {"path": "text_encoder", "layout": "BTD", "arg": "text_ids",
                                                      "index": None, "key": None, "width": None}
    assert saved["widths"]["features"] == {"text": 8, "audio": 8}


def test_cggm_trains_with_module_entries_and_reads_each_encoder(tmp_path):
    from promptkit.cggm import CGGM
    from promptkit.recipes import from_dict, load_recipe_data
    from promptkit.train.prompt_stage import prompt_tune

    spec = {**hooks(), "trainable": ["head"]}
    recipe = from_dict({**_token_recipe(), "hooks": spec, "cggm": {}})
    data = load_recipe_data(recipe)
    torch.manual_seed(0)
    backbone = build(dict(data.feature_dims), dim=8, linear_head=True)
    p, result = prompt_tune(recipe, data, backbone, tmp_path, hooks=spec, device="cpu", progress=False, cggm=True)
    assert all(0 < result.history[-1][f"B_{m}"] < 3 for m in MODS)
    p.unwrap()
    plugin = CGGM.from_recipe_section(backbone, spec, {}, task=data.task)
    accs = plugin.unimodal_accuracy(data.loader("test", 8))  # its own forward: token ids under 'text_ids'
    assert set(accs) == set(MODS) and all(0 <= a <= 1 for a in accs.values())


def test_a_compiled_backbone_gives_the_same_outputs_with_module_entries():
    from promptkit.compile import compile_model

    p = prompter()
    x = batch()
    want = p(**x, mask=MASK)
    compile_model(p, backend="eager")  # dynamo traces the backbone, its hooks and the substituted extractors
    assert torch.allclose(p(**x, mask=MASK), want, atol=1e-6)
    assert torch.equal(p(**x, mask=MASK), p(**with_missing_rows_changed(x), mask=MASK))


def test_the_data_scaled_init_reads_a_module_entry_at_its_extractor():
    p = prompter()
    x = batch()
    measured = p.calibrate_init(x)
    with torch.no_grad():
        text = p.backbone.text_encoder(x["text"])
    assert "features.text" in measured
    assert torch.allclose(p.mmgm.out_maps["text"][-1].bias, text.reshape(-1, 8).mean(0), atol=1e-6)
