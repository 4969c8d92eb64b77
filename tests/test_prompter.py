"""MissingModalityPrompter: freezing, gradients, masking semantics, linear growth, save/load, unwrap."""

from __future__ import annotations

import json

import pytest
import torch
from _toy import ToyMSA, toy_inputs, toy_spec

import promptkit
from promptkit import HookSpec, PrompterConfig
from promptkit.modalities import ModalitySet
from promptkit.methods.mpmm import per_case_prompt_parameters
from promptkit.prompter import AdapterLoadError, MissingModalityPrompter

DIMS = {"text": 12, "audio": 5, "vision": 7}


def make(seed: int = 0, config: PrompterConfig | None = None, dims=DIMS):
    torch.manual_seed(seed)
    backbone = ToyMSA(dims)
    return backbone, promptkit.wrap(backbone, hooks=toy_spec(list(dims)), config=config)


def mixed_mask(batch: int = 6) -> torch.Tensor:
    ms = ModalitySet(list(DIMS))
    ids = torch.arange(batch) % len(ms.cases)
    return ms.masks_from_case_ids(ids)


def test_frozen_weights_bit_identical_and_optimizer_holds_only_trainable():
    backbone, prompter = make()
    frozen = {n: p.clone() for n, p in backbone.named_parameters() if not n.startswith("head.")}
    head = {n: p.clone() for n, p in backbone.named_parameters() if n.startswith("head.")}
    params = [p for p in prompter.parameters() if p.requires_grad]
    assert all(not p.requires_grad for n, p in backbone.named_parameters() if not n.startswith("head."))
    opt = torch.optim.Adam(params, lr=1e-2)
    x = toy_inputs(DIMS)
    for _ in range(3):
        loss = prompter(**x, mask=mixed_mask()).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for n, p in backbone.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
            assert p.grad is None, n
        else:
            assert not torch.equal(p, head[n]), n


def test_every_prompt_tensor_gets_nonzero_gradient_at_init():
    _, prompter = make()
    out = prompter(**toy_inputs(DIMS), mask=mixed_mask())
    out.sum().backward()
    for name, p in prompter.named_parameters():
        if p.requires_grad and not name.startswith("backbone."):
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} gets no gradient"


def test_permuting_the_batch_permutes_the_outputs():
    _, prompter = make()
    prompter.eval()
    x, mask = toy_inputs(DIMS), mixed_mask()
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    out = prompter(**x, mask=mask)
    out_perm = prompter(**{m: v[perm] for m, v in x.items()}, mask=mask[perm])
    torch.testing.assert_close(out_perm, out[perm])


def test_missing_input_content_has_no_effect():
    _, prompter = make()
    prompter.eval()
    x, mask = toy_inputs(DIMS), mixed_mask()
    noisy = {m: torch.where(mask[:, i, None, None], v, torch.full_like(v, float("nan"))) for i, (m, v) in enumerate(x.items())}
    torch.testing.assert_close(prompter(**noisy, mask=mask), prompter(**x, mask=mask), rtol=0, atol=0)


def test_zero_fill_copies_only_modalities_that_some_sample_misses():
    backbone, prompter = make()
    seen = {}
    backbone.register_forward_pre_hook(lambda mod, args, kwargs: seen.update(kwargs), with_kwargs=True)
    x = toy_inputs(DIMS)
    mask = torch.ones(6, 3, dtype=torch.bool)
    mask[1, 2] = False  # only vision is missing, in one sample
    x["vision"][1] = float("inf")  # whatever a missing row holds, it reaches the backbone as zeros
    with prompter.prompts_disabled():
        prompter(**x, mask=mask)
    assert seen["text"] is x["text"] and seen["audio"] is x["audio"]
    assert torch.equal(seen["vision"][1], torch.zeros_like(seen["vision"][1]))
    assert torch.equal(seen["vision"][[0, 2, 3, 4, 5]], x["vision"][[0, 2, 3, 4, 5]])


def test_available_modalities_reach_the_backbone_unchanged():
    backbone, prompter = make()
    seen = {}
    backbone.register_forward_pre_hook(lambda mod, args, kwargs: seen.update(kwargs), with_kwargs=True)
    x, mask = toy_inputs(DIMS), mixed_mask()
    prompter(**x, mask=mask)
    for i, m in enumerate(DIMS):
        rows = mask[:, i]
        assert torch.equal(seen[m][rows], x[m][rows])
        assert not torch.equal(seen[m][~rows], torch.zeros_like(seen[m][~rows])), "MMGM should fill missing rows"


def test_prompts_disabled_is_the_bare_backbone_on_zero_filled_inputs():
    backbone, prompter = make()
    prompter.eval()
    x, mask = toy_inputs(DIMS), mixed_mask()
    zero_filled = {m: v * mask[:, i, None, None] for i, (m, v) in enumerate(x.items())}
    with prompter.prompts_disabled():
        wrapped = prompter(**x, mask=mask)
    torch.testing.assert_close(wrapped, backbone(**zero_filled), rtol=0, atol=0)


def test_unwrap_restores_outputs_and_flags_exactly():
    torch.manual_seed(0)
    backbone = ToyMSA(DIMS).eval()
    x = toy_inputs(DIMS)
    before = backbone(**x)
    flags = {n: p.requires_grad for n, p in backbone.named_parameters()}
    prompter = promptkit.wrap(backbone, hooks=toy_spec(list(DIMS)))
    assert not torch.equal(prompter(**x), before)  # prompts change the output
    restored = prompter.unwrap()
    assert restored is backbone
    assert torch.equal(backbone(**x), before)
    assert {n: p.requires_grad for n, p in backbone.named_parameters()} == flags


def test_prompt_parameters_grow_linearly_in_modalities():
    counts, per_case = [], []
    for m in range(2, 7):
        dims = {f"m{i}": 4 for i in range(m)}
        _, prompter = make(config=PrompterConfig(generative=False), dims=dims)
        counts.append(sum(prompter.prompt_parameters().values()))
        assert prompter.prompt_parameters()["mmgm_networks"] == 0
        per_case.append(per_case_prompt_parameters(m, 16, [8] * m))  # MPMM: one set per case and target
    steps = [b - a for a, b in zip(counts, counts[1:])]
    assert len(set(steps)) == 1 and steps[0] > 0, counts  # constant cost per added modality
    case_steps = [b - a for a, b in zip(per_case, per_case[1:])]
    assert all(b > 1.5 * a for a, b in zip(case_steps, case_steps[1:])), per_case
    assert counts[-1] < per_case[-1]


def test_save_load_round_trip_into_a_fresh_backbone(tmp_path):
    backbone, prompter = make(seed=1)
    opt = torch.optim.Adam([p for p in prompter.parameters() if p.requires_grad], lr=1e-2)
    x, mask = toy_inputs(DIMS), mixed_mask()
    prompter(**x, mask=mask).pow(2).mean().backward()
    opt.step()
    prompter.eval()
    expected = prompter(**x, mask=mask)
    prompter.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file() and (tmp_path / "promptkit_config.json").is_file()

    fresh = ToyMSA(DIMS)
    frozen_state = {k: v for k, v in backbone.state_dict().items() if not k.startswith("head.")}
    fresh.load_state_dict(frozen_state, strict=False)  # the pre-trained frozen part comes from the user
    loaded = MissingModalityPrompter.from_pretrained(fresh, tmp_path).eval()
    torch.testing.assert_close(loaded(**x, mask=mask), expected, rtol=0, atol=0)


def test_loading_onto_another_backbone_or_tampered_files_is_refused(tmp_path):
    _, prompter = make()
    prompter.save_pretrained(tmp_path)
    with pytest.raises(AdapterLoadError, match="other parameter names/shapes"):
        MissingModalityPrompter.from_pretrained(ToyMSA(DIMS, dim=16), tmp_path)
    weights = tmp_path / "adapter_model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-3] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(AdapterLoadError, match="corrupt"):
        MissingModalityPrompter.from_pretrained(ToyMSA(DIMS), tmp_path)
    cfg = json.loads((tmp_path / "promptkit_config.json").read_text())
    cfg["backbone_class"] = "MulT"
    (tmp_path / "promptkit_config.json").write_text(json.dumps(cfg))
    with pytest.raises(AdapterLoadError, match="saved for a MulT"):
        MissingModalityPrompter.from_pretrained(ToyMSA(DIMS), tmp_path)


def test_missing_tensor_in_adapter_is_refused(tmp_path):
    from promptkit.checkpoint import load_checkpoint, save_checkpoint

    _, prompter = make()
    prompter.save_pretrained(tmp_path)
    weights = tmp_path / "adapter_model.safetensors"
    tensors, meta = load_checkpoint(weights)
    tensors.pop("signal_prompts.real.audio")
    save_checkpoint(weights, tensors, meta, kind="adapter")
    with pytest.raises(AdapterLoadError, match=r"missing tensors \['signal_prompts.real.audio'\]"):
        MissingModalityPrompter.from_pretrained(ToyMSA(DIMS), tmp_path)


def test_custom_backbone_through_hooks_trains_end_to_end():
    torch.manual_seed(0)
    backbone = ToyMSA(DIMS)
    prompter = promptkit.wrap(backbone, hooks=HookSpec.from_dict(toy_spec(list(DIMS))))
    x = toy_inputs(DIMS, batch=32)
    y = x["text"].mean(dim=(1, 2), keepdim=False)[:, None] * 3
    opt = torch.optim.Adam([p for p in prompter.parameters() if p.requires_grad], lr=3e-3)
    ms = ModalitySet(list(DIMS))
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        loss = (prompter(**x, mask=ms.sample_masks(32, 0.7, g)) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_two_prompters_in_one_process_do_not_interfere():
    _, p1 = make(seed=0)
    _, p2 = make(seed=1)
    p1.eval(), p2.eval()
    x, mask = toy_inputs(DIMS), mixed_mask()
    a1 = p1(**x, mask=mask)
    p2(**x, mask=~mask | torch.eye(6, 3, dtype=torch.bool))
    torch.testing.assert_close(p1(**x, mask=mask), a1, rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(generative=False),
        dict(signal=False),
        dict(type=False),
        dict(generative=False, signal=False),
        dict(generative=False, type=False),
        dict(signal=False, type=False),
    ],
)
def test_each_prompt_type_switches_off(kwargs):
    _, prompter = make(config=PrompterConfig(**kwargs))
    counts = prompter.prompt_parameters()
    for part, on in (
        ("generative", kwargs.get("generative", True)),
        ("mmgm_networks", kwargs.get("generative", True)),
        ("type", kwargs.get("type", True)),
    ):
        assert (counts[part] > 0) == on
    out = prompter(**toy_inputs(DIMS), mask=mixed_mask())
    assert out.shape == (6, 1)


# --- bad input ----------------------------------------------------------------------------
def test_sample_with_every_modality_missing_is_named():
    _, prompter = make()
    mask = mixed_mask()
    mask[4] = False
    with pytest.raises(ValueError, match=r"sample\(s\) \[4\] have every modality missing"):
        prompter(**toy_inputs(DIMS), mask=mask)


def test_mask_of_wrong_shape_or_dtype_is_refused():
    _, prompter = make()
    with pytest.raises(ValueError, match=r"shape \(B, 3\)"):
        prompter(**toy_inputs(DIMS), mask=torch.ones(6, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match="torch.bool"):
        prompter(**toy_inputs(DIMS), mask=torch.ones(6, 3))
    with pytest.raises(ValueError, match="6 samples"):
        prompter(**toy_inputs(DIMS), mask=torch.ones(5, 3, dtype=torch.bool))


def test_unknown_hook_path_suggests_the_closest_names():
    spec = toy_spec(list(DIMS))
    spec["signal"]["text"]["path"] = "proj.txt"
    with pytest.raises(KeyError, match=r"did you mean \['proj.text'"):
        promptkit.wrap(ToyMSA(DIMS), hooks=spec)


def test_unknown_modality_is_refused():
    _, prompter = make()
    x = toy_inputs(DIMS)
    x["depth"] = x["text"]
    with pytest.raises(KeyError, match="unknown modality"):
        prompter(**x)
    spec = toy_spec(list(DIMS))
    spec["signal"]["depth"] = "proj.text"
    with pytest.raises(KeyError, match="'features' does not know"):
        promptkit.wrap(ToyMSA(DIMS), hooks=spec)


def test_type_target_without_inferable_width_is_refused():
    spec = toy_spec(list(DIMS))
    spec["type"][0].pop("width")
    with pytest.raises(ValueError, match="cannot infer the width of type target 'enc.text'"):
        promptkit.wrap(ToyMSA(DIMS), hooks=spec)


def test_prompts_wider_than_the_backbone_expects_are_refused():
    spec = toy_spec(list(DIMS))
    spec["type"][0]["width"] = 16
    prompter = promptkit.wrap(ToyMSA(DIMS), hooks=spec)
    with pytest.raises(ValueError, match="declared BTD with width 16, but its tensor has shape"):
        prompter(**toy_inputs(DIMS))


def test_nan_in_available_features_is_named():
    _, prompter = make()
    x = toy_inputs(DIMS)
    x["audio"][2, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"audio features hold NaN/inf in available sample\(s\) \[2\]"):
        prompter(**x)


def test_spec_listing_modalities_in_another_order_maps_them_by_name():
    torch.manual_seed(0)
    spec = toy_spec(list(DIMS))
    spec["signal"] = dict(reversed(list(spec["signal"].items())))
    reordered = promptkit.wrap(ToyMSA(DIMS), hooks=spec)
    torch.manual_seed(0)
    plain = promptkit.wrap(ToyMSA(DIMS), hooks=toy_spec(list(DIMS)))
    reordered.load_state_dict(plain.state_dict())
    reordered.eval(), plain.eval()
    x, mask = toy_inputs(DIMS), mixed_mask()
    torch.testing.assert_close(reordered(**x, mask=mask), plain(**x, mask=mask), rtol=0, atol=0)


# --- type_positions: prompt tokens that do not shift the real steps' positions -------------------


def _mult_prompter(type_positions: str, positions: str = "all", hooks=None):
    import backbones.mult  # noqa: F401  (registers MulT's hook spec)
    from backbones.mult import MulT

    torch.manual_seed(0)
    backbone = MulT(layers=1, positions=positions).eval()
    cfg = PrompterConfig(prompt_length=4, type_positions=type_positions)
    return backbone, promptkit.wrap(backbone, hooks=hooks, config=cfg)


def _mult_inputs(batch: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    dims = {"text": 300, "audio": 5, "vision": 20}
    return {m: torch.randn(batch, t, d, generator=g) for (m, d), t in zip(dims.items(), (5, 7, 9))}


def _record_memory_embeddings(backbone):
    """Per memory: (its input sequence, the prefix_len it was called with, its embedded input)."""
    seen, handles = {}, []
    for m, mem in backbone.mem.items():
        def pre(mod, args, kwargs, m=m):
            seen[m] = [args[0], kwargs.get("prefix_len", 0)]

        def after(mod, args, kwargs, out, m=m):
            seen[m].append(mod._embed(args[0], kwargs.get("prefix_len", 0)))

        handles.append(mem.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(mem.register_forward_hook(after, with_kwargs=True))
    return seen, handles


@pytest.mark.parametrize("positions", ["all", "skip_padding"])
def test_type_positions_prefix_keeps_the_memories_real_steps_positions(positions):
    backbone, prompter = _mult_prompter("prefix", positions)
    assert all(t.prefix_len_arg == "prefix_len" for t in prompter.spec.type)
    seen, handles = _record_memory_embeddings(backbone)  # registered after the prompter's: sees the prompted call
    with torch.no_grad():
        out = prompter(**_mult_inputs(), mask=mixed_mask())
    for h in handles:
        h.remove()
    assert out.shape == (6, 1)
    for m, (seq, prefix_len, emb) in seen.items():
        mem = backbone.mem[m]
        assert prefix_len == 4 and seq.shape[1] == 4 + {"text": 5, "audio": 7, "vision": 9}[m]
        ids = mem.position_ids(seq, prefix_len)
        assert ids[:, :4].eq(0).all()  # the prompt tokens get no position
        assert torch.equal(ids[:, 4:], mem.position_ids(seq[:, 4:]))  # the real steps: as without prompts
        assert torch.equal(emb[:, 4:], mem._embed(seq[:, 4:]))
        assert torch.equal(emb[:, :4], seq[:, :4] * mem.embed_scale)


def test_type_positions_shift_is_todays_behaviour():
    backbone, shifted = _mult_prompter("shift")
    assert PrompterConfig().type_positions == "shift"
    seen, handles = _record_memory_embeddings(backbone)
    x, mask = _mult_inputs(), mixed_mask()
    with torch.no_grad():
        out = shifted(**x, mask=mask)
    for h in handles:
        h.remove()
    for m, (seq, prefix_len, _) in seen.items():
        assert prefix_len == 0  # no prefix_len is passed: the tokens take positions 1..l_p
        assert backbone.mem[m].position_ids(seq)[:, 4:].tolist() == [list(range(5, seq.shape[1] + 1))] * 6
    _, prefixed = _mult_prompter("prefix")  # same seed: the same backbone and prompts
    with torch.no_grad():
        assert torch.equal(shifted(**x, mask=mask), out)
        assert not torch.allclose(prefixed(**x, mask=mask), out)  # the option changes the function


def test_type_positions_prefix_falls_back_to_shift_where_a_type_target_has_no_prefix_len_arg():
    import backbones.mult  # noqa: F401
    from backbones.mult import MulT
    from promptkit.hookspec import hook_spec_for

    spec = hook_spec_for(MulT(layers=1)).to_dict()
    spec["type"][1]["prefix_len_arg"] = None
    with pytest.warns(UserWarning, match=r"falls back to 'shift'.*\['mem.audio'\] have no prefix_len_arg.*"
                                         r"\[prompt.prompter\] type_positions = \"shift\""):
        _, fallen = _mult_prompter("prefix", hooks=spec)
    assert fallen.config.type_positions == "shift"  # what ran is what its adapter records
    _, shifted = _mult_prompter("shift", hooks=spec)  # fine without a prefix
    x, mask = _mult_inputs(), mixed_mask()
    with torch.no_grad():
        assert torch.equal(fallen(**x, mask=mask), shifted(**x, mask=mask))
    make(config=PrompterConfig(type=False, type_positions="prefix"))  # no type prompts: nothing to check
    with pytest.raises(ValueError, match="type_positions must be 'shift' or 'prefix', got 'front'"):
        PrompterConfig(type_positions="front")
    with pytest.raises(ValueError, match="prefix_len_arg must be a keyword name"):
        HookSpec.from_dict({"features": {"a": "a"}, "type": [{"path": "x", "prefix_len_arg": 3}]})


def test_type_positions_prefix_round_trips_through_save_and_load(tmp_path):
    backbone, prompter = _mult_prompter("prefix")
    prompter.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "promptkit_config.json").read_text())
    assert saved["prompter_config"]["type_positions"] == "prefix"
    assert {t["prefix_len_arg"] for t in saved["hook_spec"]["type"]} == {"prefix_len"}
    loaded = MissingModalityPrompter.from_pretrained(prompter.unwrap(), tmp_path)
    assert loaded.config.type_positions == "prefix"
    x, mask = _mult_inputs(), mixed_mask()
    with torch.no_grad():
        a = loaded(**x, mask=mask)
    loaded.unwrap()
    _, again = _mult_prompter("prefix")
    again.load_state_dict(loaded.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(again(**x, mask=mask), a)


# --- missing-signal prompts: P_NMS where the sample has the modality, P_MS where it was generated ---


def _record_after_prompter(module):
    """A forward hook registered after the prompter's (so it runs after it): the module's input
    and its output as prompted."""
    seen = {}

    def hook(mod, args, out):
        seen["input"], seen["output"] = args[0].detach().clone(), out.detach().clone()

    return seen, module.register_forward_hook(hook)


@pytest.mark.parametrize("m", ["audio", "vision"])
@pytest.mark.parametrize("constant_on", ["generated", "real"])
def test_signal_prompt_real_goes_to_present_samples_generated_to_missing_ones(m, constant_on):
    backbone, prompter = make()
    prompter.eval()
    col, big = list(DIMS).index(m), 100.0
    with torch.no_grad():
        getattr(prompter.signal_prompts, constant_on)[m].fill_(big)
        getattr(prompter.signal_prompts, "real" if constant_on == "generated" else "generated")[m].zero_()
    module = backbone.proj[m]
    assert prompter.spec.signal[m].path == f"proj.{m}" and prompter.spec.signal[m].layout == "BDT"
    seen, handle = _record_after_prompter(module)
    order = list(module._forward_hooks)  # hooks run in registration order
    assert len(order) == 2 and order[-1] == handle.id  # the prompter's hook first, then the recorder
    mask = torch.ones(6, 3, dtype=torch.bool)
    mask[[0, 3, 4], col] = False  # samples 1, 2, 5 have m; 0, 3, 4 miss it
    mask[3, 0] = False  # and some other modality missing too, so it is not the only one
    with torch.no_grad():
        prompter(**toy_inputs(DIMS), mask=mask)
        handle.remove()
        base = module(seen["input"])  # the unprompted projection of what m's projection received
    added = seen["output"] - base  # (B, d, T)
    has, misses = mask[:, col], ~mask[:, col]
    zeros_on, const_on = (has, misses) if constant_on == "generated" else (misses, has)
    assert torch.equal(seen["output"][zeros_on], base[zeros_on]), "a zero prompt changed these samples"
    torch.testing.assert_close(added[const_on], torch.full_like(added[const_on], big), rtol=0, atol=1e-3)


def _manual_type_tokens(prompter, missing: torch.Tensor) -> list[torch.Tensor]:
    """Eq. 4-5 written out per sample: MP = sum_m P^m M_m with P^m = P_MS^m (generated) where m is
    missing, P_NMS^m (real) where present; tokens_j = P_MT_j MP."""
    sp, tp = prompter.signal_prompts, prompter.type_prompts
    out = []
    for j, width in enumerate(tp.target_widths):
        rows = []
        for b in range(missing.shape[0]):
            mp = sum(
                (sp.generated[m] if missing[b, i] else sp.real[m]) @ tp.modality_maps[f"{m}_{width}"]
                for i, m in enumerate(prompter.modality_set.names)
            )
            rows.append(tp.type_prompts[j] @ mp)
        out.append(torch.stack(rows))
    return out


def test_type_prompt_tokens_use_the_generated_signal_prompt_of_a_missing_modality():
    backbone, prompter = make()
    prompter.eval()
    sp = prompter.signal_prompts
    for m in DIMS:
        assert not torch.allclose(sp.real[m], sp.generated[m])
    mask = torch.ones(4, 3, dtype=torch.bool)
    mask[0, 1] = False  # sample 0 misses audio; sample 1 has everything
    mask[2, 2] = False  # sample 2 misses vision
    mask[3, [0, 1]] = False  # sample 3 has only vision
    missing = ~mask
    with torch.no_grad():
        pairs = {m: sp.pair(m) for m in prompter.modality_set.names}
        direct = prompter.type_prompts(pairs, missing)
        want = _manual_type_tokens(prompter, missing)
        for got, exp in zip(direct, want):
            torch.testing.assert_close(got, exp, rtol=1e-5, atol=1e-6)
        # the only difference between samples 0 and 1: audio's P_MS instead of its P_NMS
        width = prompter.type_prompts.target_widths[0]
        delta = prompter.type_prompts.type_prompts[0] @ (
            (sp.generated["audio"] - sp.real["audio"]) @ prompter.type_prompts.modality_maps[f"audio_{width}"])
        torch.testing.assert_close(direct[0][0] - direct[0][1], delta, rtol=1e-4, atol=1e-6)

        # and through the forward pass: the tokens the encoders receive in front of the sequence
        seen, handles = {}, []
        for j, target in enumerate(prompter.spec.type):
            enc = backbone.enc[list(DIMS)[j]]
            assert target.path == f"enc.{list(DIMS)[j]}"
            handles.append(enc.register_forward_pre_hook(
                lambda mod, args, j=j: seen.__setitem__(j, args[0].detach().clone())))
        prompter(**toy_inputs(DIMS, batch=4), mask=mask)
        for h in handles:
            h.remove()
    length = prompter.config.prompt_length
    for j, exp in enumerate(want):
        torch.testing.assert_close(seen[j][:, :length], exp, rtol=1e-5, atol=1e-6)
