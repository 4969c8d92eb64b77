import numpy as np
import pytest
import torch

from promptkit.data import collate_msa, load_data, make_loader, make_synthetic_mosi
from promptkit.data.synthetic import DESCRIPTION

SMALL = dict(sizes=(40, 10, 12), seq_lens={"text": 12, "audio": 12, "vision": 12})


def _all_bytes(bundle):
    out = []
    for split in ("train", "valid", "test"):
        ds = bundle.splits[split]
        out += [ds.features[m].numpy().tobytes() for m in bundle.modalities]
        out.append(ds.labels.numpy().tobytes())
    return out


def _ridge_acc2(bundle, mods, lam=50.0):
    """Ridge on time-averaged, standardised features; binary accuracy on non-zero test labels."""

    def feats(split):
        return np.concatenate([bundle.splits[split].features[m].numpy().mean(1) for m in mods], 1)

    x, y = feats("train"), bundle.splits["train"].labels.numpy()
    mu, sd = x.mean(0), x.std(0) + 1e-6
    a = np.c_[(x - mu) / sd, np.ones(len(x))]
    beta = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ y)
    xt, yt = feats("test"), bundle.splits["test"].labels.numpy()
    pred = np.c_[(xt - mu) / sd, np.ones(len(xt))] @ beta
    nz = yt != 0
    return float(np.mean((pred[nz] > 0) == (yt[nz] > 0)))


def test_same_seed_gives_same_bytes_and_other_seed_differs():
    a = make_synthetic_mosi(seed=3, **SMALL)
    b = make_synthetic_mosi(seed=3, **SMALL)
    c = make_synthetic_mosi(seed=4, **SMALL)
    assert _all_bytes(a) == _all_bytes(b)
    assert all(x != y for x, y in zip(_all_bytes(a), _all_bytes(c)))


def test_default_shapes_splits_and_description():
    bundle = make_synthetic_mosi()
    assert {s: len(ds) for s, ds in bundle.splits.items()} == {"train": 1284, "valid": 229, "test": 686}
    assert bundle.modalities == ("text", "audio", "vision")
    assert bundle.feature_dims == {"text": 300, "audio": 5, "vision": 20}
    assert bundle.seq_lens == {"text": 50, "audio": 50, "vision": 50}
    assert bundle.splits["test"].features["text"].shape == (686, 50, 300)
    assert bundle.splits["train"].features["vision"].dtype == torch.float32
    assert bundle.task == "regression" and bundle.out_dim == 1
    assert DESCRIPTION in bundle.description and "NOT CMU-MOSI" in bundle.description


def test_unaligned_lengths():
    bundle = make_synthetic_mosi(aligned=False, sizes=(6, 3, 3))
    assert bundle.seq_lens == {"text": 50, "audio": 375, "vision": 500}
    assert bundle.splits["valid"].features["audio"].shape == (3, 375, 5)
    assert bundle.splits["valid"].features["vision"].shape == (3, 500, 20)


def test_custom_sizes_and_label_range_and_grid():
    bundle = make_synthetic_mosi(seed=1, sizes={"train": 300, "valid": 7, "test": 9}, seq_lens={"text": 5})
    assert [len(bundle.splits[s]) for s in ("train", "valid", "test")] == [300, 7, 9]
    y = bundle.splits["train"].labels.numpy()
    assert y.dtype == np.float32 and y.shape == (300,)
    assert y.min() >= -3.0 and y.max() <= 3.0
    assert y.min() < -1.5 and y.max() > 1.5  # spans the scale
    np.testing.assert_allclose(y * 5, np.round(y * 5), atol=1e-4)  # 0.2 grid


def test_sequences_are_left_padded_with_zeros():
    bundle = make_synthetic_mosi(seed=0, **SMALL)
    x = bundle.splits["train"].features["audio"].numpy()  # (N, T, D)
    step_is_zero = (x == 0).all(-1)  # (N, T)
    assert not step_is_zero[:, -1].any()  # the last step is always valid
    assert step_is_zero[:, 0].any()  # some samples are padded
    # padding is a prefix: once a step is valid, all later steps are valid
    assert (np.diff(step_is_zero.astype(int), axis=1) <= 0).all()


def test_text_alone_beats_audio_or_vision_alone():
    bundle = make_synthetic_mosi(seed=0, sizes=(600, 10, 500), seq_lens={"text": 20, "audio": 20, "vision": 20})
    acc = {k: _ridge_acc2(bundle, mods) for k, mods in
           {"t": ["text"], "a": ["audio"], "v": ["vision"], "tav": ["text", "audio", "vision"]}.items()}
    assert acc["t"] > 0.72
    assert acc["t"] > max(acc["a"], acc["v"]) + 0.1
    assert 0.5 < acc["a"] < 0.7 and 0.5 < acc["v"] < 0.7
    assert acc["tav"] >= acc["t"] - 0.02


def test_target_domain_shift_moves_away_from_source():
    lens = {"text": 10, "audio": 10, "vision": 10}
    src = make_synthetic_mosi(seed=2, domain="source", sizes=(600, 5, 5), seq_lens=lens)
    mods = ["text", "audio", "vision"]

    def transfer(shift):
        tgt = make_synthetic_mosi(seed=2, domain="target", domain_shift=shift, sizes=(5, 5, 400), seq_lens=lens)
        mixed = type("B", (), {"splits": {"train": src.splits["train"], "test": tgt.splits["test"]}})
        return _ridge_acc2(mixed, mods)

    assert transfer(0.0) > 0.75  # same mixing: a source model transfers
    assert transfer(1.0) < 0.65  # orthogonal mixing: it does not
    assert "domain=source" in src.description and len(src.splits["train"]) == 600


def test_default_source_is_larger_than_target():
    from promptkit.data.synthetic import SOURCE_SIZES, TARGET_SIZES

    assert all(SOURCE_SIZES[s] > TARGET_SIZES[s] for s in TARGET_SIZES)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(domain="mosei"), "domain must be"),
        (dict(domain_shift=1.5), "domain_shift"),
        (dict(sizes=(1, 2)), "n_train, n_valid, n_test"),
        (dict(sizes=(10, 0, 3)), "'valid' must be a positive int"),
        (dict(seq_lens={"depth": 3}), "unknown modality"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises((ValueError, KeyError), match=match):
        make_synthetic_mosi(**kwargs)


def test_load_data_synthetic_forwards_kwargs_and_batches():
    bundle = load_data("synthetic", seed=5, **SMALL)
    assert len(bundle.splits["train"]) == 40
    batch = next(iter(make_loader(bundle.splits["train"], batch_size=8, shuffle=True, seed=0)))
    assert batch["text"].shape == (8, 12, 300) and batch["labels"].shape == (8,)
    assert batch["mask"].shape == (8, 3) and batch["mask"].all()
    assert collate_msa([bundle.splits["test"][0]])["index"].tolist() == [0]
