"""MISA and MMIM with a BERT, UniMSE with T5 token embeddings, reading text as token ids ``(B, 3, T)``.

Each backbone at a tiny size: its forward, what padding and an empty (zero-filled) text do, its
backbone file (the BERT/T5 config recorded as data, rebuilt on the meta device), a few training
steps, local pre-trained weights, its registered hook spec (MMGM at the text encoder's output), a
prompted forward that never reads a missing text's ids, and each shipped recipe
(``recipes/*-bert.toml``, ``*-t5.toml``) run end to end at tiny sizes by ``promptkit run``.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
import torch
from _helpers import to_toml

from backbones import create_backbone
from promptkit import PrompterConfig, wrap
from promptkit.backbone_files import load_backbone, save_backbone
from promptkit.cli import main
from promptkit.data import collate_msa, make_synthetic_mosi
from promptkit.hook_targets import FeatureModule
from promptkit.hookspec import hook_spec_for
from promptkit.recipes import RecipeError, from_dict

ROOT = Path(__file__).resolve().parents[1]
SEQ = {"text": 7, "audio": 5, "vision": 6}
TINY = {
    "misa": dict(text_encoder="bert", hidden_size=16, fusion_ff=32),
    "mmim": dict(text_encoder="bert", text_dim=16, text_layers=1, text_heads=2, text_ff=32, fusion_hidden=16),
    "unimse": dict(text_encoder="t5", d_model=16, num_layers=2, num_heads=2, d_ff=32, fusion_layers=1, adapter_size=8),
}
EMBEDDING = {"misa": "text_encoder.embeddings.word_embeddings.weight",
             "mmim": "text_encoder.embeddings.word_embeddings.weight",
             "unimse": "text_encoder.embed.weight"}


@pytest.fixture(scope="module")
def data():
    return make_synthetic_mosi(seed=0, sizes=(48, 16, 16), seq_lens=SEQ, text="tokens", codebook_size=16)


def _batch(data, n=16, split="train"):
    b = collate_msa([data.splits[split][i] for i in range(n)])
    return {m: b[m] for m in data.modalities}, b["labels"]


def _build(name, data, **extra):
    torch.manual_seed(0)
    return create_backbone(name, feature_dims=data.feature_dims, **{**TINY[name], **extra})


@pytest.mark.parametrize("name", list(TINY))
def test_forward_reads_ids_and_never_the_padding(name, data):
    model = _build(name, data).eval()
    feats, _ = _batch(data)
    out = model(**feats)
    assert out.shape == (16, 1) and torch.isfinite(out).all()
    text = feats["text"].clone()
    pad = text[:, 1] == 0
    assert pad.any()
    text[:, 0][pad] = 5  # ids at padded steps: never read
    assert torch.allclose(model(**{**feats, "text": text}), out, atol=1e-6)
    changed = feats["text"].clone()
    changed[:, 0, 1] = 3 + (changed[:, 0, 1] - 3 + 1) % 16  # a real token changes: the output does
    assert not torch.allclose(model(**{**feats, "text": changed}), out, atol=1e-6)


@pytest.mark.parametrize("name", list(TINY))
def test_an_empty_zero_filled_text_is_no_text_not_pad_tokens(name, data):
    """A row of zeros (what a prompter's zero fill makes of ids) encodes to exactly 0, not to the
    embeddings of [PAD]; the forward stays finite (no fully masked attention row)."""
    model = _build(name, data).eval()
    feats, _ = _batch(data, 4)
    text = feats["text"].clone()
    text[1:3] = 0
    assert (model.text_encoder(text)[1:3] == 0).all()
    assert model.text_encoder(text)[0].abs().sum() > 0
    assert torch.isfinite(model(**{**feats, "text": text})).all()


@pytest.mark.parametrize("name", list(TINY))
def test_wrong_text_inputs_are_named(name, data):
    model = _build(name, data).eval()
    feats, _ = _batch(data, 4)
    with pytest.raises(TypeError, match="must be token ids"):
        model(**{**feats, "text": feats["text"].float()})
    with pytest.raises(ValueError, match=r"lie in \[0, 19\)"):
        model(**{**feats, "text": feats["text"] * 10})
    with pytest.raises(ValueError, match=r"\(B, 3, T\)"):
        model(**{**feats, "text": feats["text"][:, :2]})
    with pytest.raises(ValueError, match="text_encoder must be"):
        create_backbone(name, feature_dims=data.feature_dims, text_encoder="gpt2")


@pytest.mark.parametrize("name", list(TINY))
def test_backbone_file_records_the_text_config_as_data_and_round_trips(name, data, tmp_path):
    model = _build(name, data).eval()
    feats, _ = _batch(data)
    cfg = model.config()
    assert cfg["text_encoder"] == TINY[name]["text_encoder"]
    assert cfg["text_config"]["vocab_size"] == 19
    assert all(type(v) in (int, float, str) for v in cfg["text_config"].values())
    json.dumps(cfg)  # plain data
    path = save_backbone(model, tmp_path / "backbone.safetensors", name=name)
    loaded = load_backbone(path)  # rebuilt on the meta device first, then on the CPU
    assert loaded.config() == cfg
    assert torch.allclose(loaded(**feats), model(**feats), atol=1e-6)


@pytest.mark.parametrize("name", list(TINY))
def test_a_few_training_steps_fit_a_batch_and_train_the_text_encoder(name, data):
    model = _build(name, data)
    feats, labels = _batch(data)

    def eval_loss():
        with torch.no_grad():
            return float((model.eval()(**feats)[:, 0] - labels).abs().mean())

    before, start = dict(model.named_parameters())[EMBEDDING[name]].detach().clone(), eval_loss()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(40):
        opt.zero_grad()
        loss = (model(**feats)[:, 0] - labels).abs().mean()
        aux = model.auxiliary_loss()
        (loss + (aux if aux is not None else 0)).backward()
        opt.step()
    assert eval_loss() < 0.6 * start  # measured: 0.39-0.43 of the start after 40 steps
    assert not torch.equal(dict(model.named_parameters())[EMBEDDING[name]], before)


@pytest.mark.parametrize("name", list(TINY))
def test_registered_spec_puts_mmgm_at_the_text_encoder_output(name, data):
    model = _build(name, data)
    spec = hook_spec_for(model)
    entry = spec.features["text"]
    assert isinstance(entry, FeatureModule) and entry.path == "text_encoder" and entry.layout == "BTD"
    assert entry.width == model.text_encoder.out_dim
    assert spec.features["audio"] == "audio" and spec.features["vision"] == "vision"
    for target in spec.signal.values():  # signal prompts downstream of the text encoder, never inside it
        assert not target.path.startswith("text_encoder")
    assert not any(t.path.startswith("text_encoder") for t in spec.type)
    feats_spec = hook_spec_for(create_backbone(name, **{k: v for k, v in TINY[name].items() if k != "text_encoder"}))
    assert feats_spec.features["text"] == "text"  # text features: as before


@pytest.mark.parametrize("name", list(TINY))
def test_prompted_forward_never_reads_a_missing_texts_ids(name, data):
    model = _build(name, data).eval()
    prompter = wrap(model, config=PrompterConfig(prompt_length=4)).eval()
    feats, _ = _batch(data, 8)
    mask = torch.ones(8, 3, dtype=torch.bool)
    mask[:4, 0] = False  # text missing in the first four
    out = prompter(**feats, mask=mask)
    other = feats["text"].clone()
    other[:4] = torch.flip(other[4:8], dims=[0])  # other real texts in the missing rows
    assert torch.allclose(prompter(**{**feats, "text": other}, mask=mask), out, atol=1e-6)
    other[5, 0, 1] = 3 + (other[5, 0, 1] - 3 + 1) % 16  # an available text: read
    assert not torch.allclose(prompter(**{**feats, "text": other}, mask=mask)[5], out[5], atol=1e-6)


def _save_pretrained(kind, vocab, directory):
    from transformers import BertConfig, BertModel, T5Config, T5EncoderModel

    torch.manual_seed(1)
    if kind == "bert":
        cfg = BertConfig(vocab_size=vocab + 5, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=24)
        model = BertModel(cfg, add_pooling_layer=False)
    else:
        model = T5EncoderModel(T5Config(vocab_size=vocab + 5, d_model=16, d_kv=8, d_ff=24, num_layers=2, num_heads=2))
    model.save_pretrained(directory)
    return model


@pytest.mark.parametrize("name", list(TINY))
def test_local_pretrained_weights_load_and_the_file_rebuilds_without_them(name, data, tmp_path):
    kind = TINY[name]["text_encoder"]
    hf = _save_pretrained(kind, 19, tmp_path / "weights")
    model = create_backbone(name, feature_dims=data.feature_dims, text_encoder=kind,
                            pretrained_path=str(tmp_path / "weights")).eval()
    emb = dict(model.named_parameters())[EMBEDDING[name]]
    assert torch.equal(emb, hf.get_input_embeddings().weight)
    assert model.config().get("pretrained_path") is None and model.config()["text_config"]["vocab_size"] == 24
    path = save_backbone(model, tmp_path / "b.safetensors", name=name)
    shutil.rmtree(tmp_path / "weights")
    feats, _ = _batch(data, 4)
    assert torch.allclose(load_backbone(path)(**feats), model(**feats), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        create_backbone(name, feature_dims=data.feature_dims, text_encoder=kind, pretrained_path=str(tmp_path / "no"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot load"):
        create_backbone(name, feature_dims=data.feature_dims, text_encoder=kind, pretrained_path=str(tmp_path / "empty"))


def test_bad_text_configs_are_named(data):
    with pytest.raises(KeyError, match="text_config has key"):
        create_backbone("misa", feature_dims=data.feature_dims, text_encoder="bert", text_config={"hidden": 8})
    with pytest.raises(ValueError, match="configure text_encoder = 'bert'"):
        create_backbone("mmim", feature_dims=data.feature_dims, text_config={"hidden_size": 8})
    with pytest.raises(ValueError, match="vocab_size 8 is below the data's 19"):
        create_backbone("unimse", feature_dims=data.feature_dims, text_encoder="t5", text_config={"vocab_size": 8})
    with pytest.raises(ValueError, match="BERT's vocabulary has 8 ids, the data's text 19"):
        create_backbone("misa", feature_dims=data.feature_dims, text_encoder="bert", text_config={"vocab_size": 8})
    with pytest.raises(KeyError, match="rnn_hidden names 'text'"):
        create_backbone("misa", feature_dims=data.feature_dims, text_encoder="bert", rnn_hidden={"text": 8})


RECIPES = {"misa-synth-bert": "misa", "mmim-synth-bert": "mmim", "unimse-synth-t5": "unimse"}


def _tiny_recipe(name, directory):
    """The shipped recipe with tiny sizes: data, backbone, epochs, prompt length, one missing rate."""
    d = tomllib.loads((ROOT / "recipes" / f"{name}.toml").read_text())
    assert d["backbone"]["config"]["text_encoder"] in ("bert", "t5") and d["data"]["synthetic"]["text"] == "tokens"
    d["backbone"]["config"].update({k: v for k, v in TINY[RECIPES[name]].items() if k != "text_encoder"})
    d["data"].update(sizes={"train": 48, "valid": 16, "test": 24}, source_sizes={"train": 48, "valid": 16, "test": 16})
    d["data"]["synthetic"].update(seq_lens=SEQ, codebook_size=16)
    d["pretrain"].update(epochs=1, batch_size=16)
    d["prompt"].update(epochs=1, batch_size=16)
    d["prompt"]["prompter"]["prompt_length"] = 4
    d["eval"].update(missing_rates=[0.5], max_se=100.0)
    path = directory / f"{name}.toml"
    path.write_text(to_toml(d))
    return path


@pytest.mark.parametrize("name", list(RECIPES))
def test_shipped_recipe_runs_end_to_end(name, tmp_path):
    recipe, out = _tiny_recipe(name, tmp_path), tmp_path / "run"
    assert main(["run", "--recipe", str(recipe), "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    protocol = json.loads((out / "protocol.json").read_text())
    assert set(protocol["results"]) >= {"zero_filled", "mplmm", "head_only", "full_finetune"}
    assert "{t}" in protocol["ceiling"] and protocol["ceiling"]["{t}"]["metrics"]["non0_acc2"] > 0
    backbone = load_backbone(out / "pretrain" / "backbone.safetensors")
    assert backbone.config()["text_encoder"] in ("bert", "t5")
    spec = json.loads((out / "prompt" / "adapter" / "promptkit_config.json").read_text())
    assert "text_encoder" in json.dumps(spec)  # the adapter records the module entry


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d: d["backbone"]["config"].update(text_encoder="gpt2"), "text_encoder must be one of"),
        (lambda d: d["data"]["synthetic"].update(text="words"), r"\[data.synthetic\] text must be"),
        (lambda d: d["data"]["synthetic"].update(codebook_size=1), "codebook_size must be an int >= 2"),
        (lambda d: d["data"]["synthetic"].update(text="features"), "codebook_size applies to text"),
        (lambda d: d["data"].update(text="tokens"), r"apply to file data; for the generator set \[data.synthetic\]"),
    ],
)
def test_recipe_keys_for_token_text_are_checked_at_load(change, match):
    d = tomllib.loads((ROOT / "recipes" / "misa-synth-bert.toml").read_text())
    change(d)
    with pytest.raises(RecipeError, match=match):
        from_dict(d)


def test_ridge_ceiling_reads_token_text_as_a_bag_of_ids():
    """The per-case ridge ceiling of token text: its bag of ids (the mean over 3 rows of ids, mask
    and segments would be noise: ~50 %)."""
    from promptkit.evaluation.ceiling import ridge_ceilings

    data = make_synthetic_mosi(seed=0, sizes=(600, 200, 400), seq_lens={"text": 12, "audio": 6, "vision": 6},
                               text="tokens")
    ceiling = ridge_ceilings(data, "mosi")
    assert ceiling["{t}"]["metrics"]["non0_acc2"] > 0.68
    assert ceiling["complete"]["metrics"]["non0_acc2"] >= ceiling["{a,v}"]["metrics"]["non0_acc2"] - 0.02


def test_data_describe_shows_token_text_as_ids(tmp_path, capsys):
    recipe = _tiny_recipe("misa-synth-bert", tmp_path)
    assert main(["data", "describe", "--recipe", str(recipe)]) == 0
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "token ids (codebook of 16)" in out  # the description
    assert "text (24, 3, 7) token ids <" in out and "(24, 5, 5)" in out  # ids (N, 3, T), audio (N, T, D)


@pytest.mark.parametrize("name", list(TINY))
def test_lora_probe_feeds_token_ids_to_a_token_text_backbone(name, data):
    """LoRA's target probe runs the backbone once on example inputs: token ids for the text."""
    from promptkit.methods.lora_targets import lora_target_modules

    model = _build(name, data).eval()
    targets = lora_target_modules(model, hook_spec_for(model))
    assert any(t.startswith("text_encoder.") or t.startswith("fusion.t5") for t in targets), targets
