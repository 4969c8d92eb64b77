"""The generator's worlds: the paper's four data sets from one latent process."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptkit.data.synthetic import make_synthetic_mosi
from promptkit.data.synthetic.worlds import IEMOCAP_BALANCE
from promptkit.metrics import EMOTIONS, metric_kind
from promptkit.recipes import from_dict

LENS = {"text": 3, "audio": 3, "vision": 3}
SIZES = (40, 8, 8)


def _equal(a, b) -> bool:
    return all(torch.equal(a.splits[s].features[m], b.splits[s].features[m]) and
               torch.equal(a.splits[s].labels, b.splits[s].labels) for s in a.splits for m in a.modalities)


def test_mosi_and_mosei_worlds_are_the_default_bytes():
    kw = dict(sizes=SIZES, seq_lens=LENS)
    assert _equal(make_synthetic_mosi(world="mosi", **kw), make_synthetic_mosi(**kw))
    assert _equal(make_synthetic_mosi(world="mosei", **kw), make_synthetic_mosi(domain="source", **kw))
    # a target world's source is the MOSEI world (where its backbone pre-trains)
    assert _equal(make_synthetic_mosi(world="iemocap", domain="source", **kw), make_synthetic_mosi(domain="source", **kw))


def test_iemocap_world_shapes_labels_and_balance():
    d = make_synthetic_mosi(world="iemocap", seq_lens=LENS)
    assert d.feature_dims == {"text": 1024, "audio": 130, "vision": 342}  # MMIN's features
    assert {s: len(x) for s, x in d.splits.items()} == {"train": 2717, "valid": 798, "test": 938}
    assert (d.task, d.out_dim) == ("classification", 8) and metric_kind("iemocap_binary").out_dim == 8
    y = d.splits["train"].labels
    assert y.shape == (2717, 4) and y.dtype == torch.int64 and bool((y.sum(1) == 1).all())  # one emotion each
    share = y.float().mean(0).numpy()
    want = np.array([IEMOCAP_BALANCE[e] for e in EMOTIONS])
    assert np.abs(share - want).max() < 0.05, share  # neutral/happy ~30 %, sad/angry ~20 %
    assert d.splits["test"].features["audio"].shape == (938, 3, 130)


def test_sims_world_scores_and_unimodal_labels():
    d = make_synthetic_mosi(world="sims", seq_lens=LENS)
    assert d.feature_dims == {"text": 768, "audio": 33, "vision": 709}  # MMSA's CH-SIMS features
    assert {s: len(x) for s, x in d.splits.items()} == {"train": 1368, "valid": 456, "test": 457}
    y = d.splits["train"].labels
    assert d.task == "regression" and y.min() >= -1 and y.max() <= 1
    assert np.allclose(np.round(y.numpy() * 5), y.numpy() * 5, atol=1e-5)  # a 0.2 grid
    uni = d.splits["test"].unimodal_labels
    assert set(uni) == {"text", "audio", "vision"} and all(u.shape == (457,) for u in uni.values())
    for m, u in uni.items():  # each follows the overall score, none equals it
        r = np.corrcoef(u.numpy(), d.splits["test"].labels.numpy())[0, 1]
        assert 0.3 < r < 0.99, (m, r)


def test_target_worlds_are_seeded_and_their_own():
    a = make_synthetic_mosi(world="sims", sizes=SIZES, seq_lens=LENS)
    assert _equal(a, make_synthetic_mosi(world="sims", sizes=SIZES, seq_lens=LENS))
    assert not torch.equal(a.splits["train"].labels,
                           make_synthetic_mosi(world="sims", seed=1, sizes=SIZES, seq_lens=LENS).splits["train"].labels)
    small = make_synthetic_mosi(world="iemocap", sizes=SIZES, seq_lens=LENS, feature_dims={"text": 16})
    assert small.feature_dims["text"] == 16 and small.splits["train"].features["text"].shape == (40, 3, 16)


def test_worlds_refuse_what_they_do_not_have():
    with pytest.raises(ValueError, match="world must be one of"):
        make_synthetic_mosi(world="meld")
    with pytest.raises(ValueError, match="version 2"):
        make_synthetic_mosi(world="iemocap", version=1)
    with pytest.raises(ValueError, match="iemocap_binary"):
        from_dict({"data": {"synthetic": {"world": "iemocap"}}})  # scored as mosi: refused when read
    from_dict({"data": {"metric": "iemocap_binary", "synthetic": {"world": "iemocap"}}})
    with pytest.raises(ValueError, match="pre-train it once"):  # the MOSEI source cannot be scored as emotions
        from_dict({"data": {"metric": "iemocap_binary", "pretrain_on": "source", "synthetic": {"world": "iemocap"}}})
