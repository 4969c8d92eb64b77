"""Head-only controls scored on the bare backbone's own pass: the same predictions, one trunk pass."""

from __future__ import annotations

import copy

import torch

import promptkit
from backbones import create_backbone
from promptkit.data import MSADataset
from promptkit.evaluation import evaluate_protocol, prompted_forward, zero_filled_forward
from promptkit.evaluation.protocol import evaluate_protocol_group
from promptkit.evaluation.shared_trunk import retrained_head, share_trunk
from promptkit.methods.controls import FullFineTunePrompter
from promptkit.modalities import ModalitySet
from promptkit.prompter import PrompterConfig

DIMS = {"text": 6, "audio": 3, "vision": 4}
HEAD_ONLY = PrompterConfig(generative=False, signal=False, type=False)


def _bare() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone("mult", feature_dims=DIMS, d_model=8, num_heads=2, layers=1).eval()


def _head_only(bare: torch.nn.Module, seed: int = 1) -> promptkit.MissingModalityPrompter:
    prompter = promptkit.wrap(copy.deepcopy(bare), config=HEAD_ONLY).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # a retrained head: other weights than the bare backbone's
        for p in prompter.backbone.head.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.5)
    return prompter


def _data(n: int = 40) -> MSADataset:
    g = torch.Generator().manual_seed(2)
    return MSADataset({m: torch.randn(n, 5, d, generator=g) for m, d in DIMS.items()}, torch.randn(n, generator=g))


def _probe(data: MSADataset):
    feats = {m: x[:16] for m, x in data.features.items()}
    return feats, ModalitySet(data.modalities).sample_masks(16, 0.7, torch.Generator().manual_seed(0))


def test_a_head_only_control_scored_on_the_shared_trunk_equals_its_own_forward():
    bare, data = _bare(), _data()
    heads = {"ho": _head_only(bare, 1), "ho2": _head_only(bare, 2)}
    forwards = {k: prompted_forward(p) for k, p in heads.items()}
    base = zero_filled_forward(bare, data.modalities)
    calls = []
    counted = lambda f, m: calls.append(m.shape[0]) or base(f, m)  # noqa: E731
    group = share_trunk(bare, counted, "zf", heads, forwards, *_probe(data))
    assert group is not None and set(group.heads) == {"ho", "ho2"}
    calls.clear()
    grouped = evaluate_protocol_group(group, data, "mosi", rates=(0.5,), batch_size=16)
    assert sum(calls) == 7 * len(data)  # one trunk pass per (sample, case) for all three models
    alone = {"zf": evaluate_protocol(base, data, "mosi", rates=(0.5,), batch_size=16),
             **{k: evaluate_protocol(f, data, "mosi", rates=(0.5,), batch_size=16) for k, f in forwards.items()}}
    for name, result in alone.items():
        for key, preds in result.predictions.items():
            torch.testing.assert_close(grouped[name].predictions[key], preds, rtol=1e-5, atol=1e-6)
    assert grouped["zf"].cases == alone["zf"].cases  # the trunk's own model: the very same computation
    # the heads differ, so a mix-up of heads (or of a head with the bare one) would show
    assert not torch.allclose(grouped["ho"].predictions["complete"], grouped["zf"].predictions["complete"])
    assert not torch.allclose(grouped["ho"].predictions["complete"], grouped["ho2"].predictions["complete"])


def test_only_head_only_controls_share_the_trunk():
    bare = _bare()
    assert retrained_head(bare, _head_only(bare)) is not None
    prompts = promptkit.wrap(copy.deepcopy(bare), config=PrompterConfig())  # MPLMM: prompts change the trunk
    assert retrained_head(bare, prompts) is None
    full = FullFineTunePrompter(copy.deepcopy(bare), config=HEAD_ONLY)  # the whole backbone trains
    assert retrained_head(bare, full) is None
    other = _head_only(bare)
    with torch.no_grad():
        next(other.backbone.proj.parameters()).add_(1.0)  # a trunk weight differs
    assert retrained_head(bare, other) is None


def test_a_head_whose_shared_prediction_differs_is_scored_on_its_own():
    bare, data = _bare(), _data()
    heads = {"ho": _head_only(bare)}
    base = zero_filled_forward(bare, data.modalities)
    wrong = {"ho": lambda f, m: prompted_forward(heads["ho"])(f, m) + 1.0}  # its own forward says otherwise
    assert share_trunk(bare, base, "zf", heads, wrong, *_probe(data)) is None
