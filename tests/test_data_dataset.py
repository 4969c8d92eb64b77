import re

import numpy as np
import pytest
import torch

from promptkit.data import DataBundle, MSADataset, collate_msa, make_loader


def _features(n, rng=None):
    rng = rng or np.random.default_rng(0)
    return {
        "text": rng.standard_normal((n, 4, 6)).astype(np.float32),
        "audio": rng.standard_normal((n, 5, 2)),  # float64: stored as float32
        "vision": rng.standard_normal((n, 3, 3)).astype(np.float32),
    }


def test_getitem_returns_one_sample_dict():
    ds = MSADataset(_features(7), np.linspace(-3, 3, 7))
    s = ds[2]
    assert list(s) == ["text", "audio", "vision", "labels", "index"]
    assert s["text"].shape == (4, 6) and s["audio"].dtype == torch.float32
    assert s["labels"].dtype == torch.float32 and s["labels"].shape == () and s["index"] == 2
    assert ds[-1]["index"] == 6
    with pytest.raises(IndexError, match="out of range"):
        ds[7]


def test_collate_regression_batch_contract():
    ds = MSADataset(_features(5), np.arange(5, dtype=np.float32))
    batch = collate_msa([ds[i] for i in (4, 0, 2)])
    assert batch["text"].shape == (3, 4, 6) and batch["text"].dtype == torch.float32
    assert batch["audio"].shape == (3, 5, 2) and batch["vision"].shape == (3, 3, 3)
    assert batch["labels"].dtype == torch.float32 and batch["labels"].tolist() == [4.0, 0.0, 2.0]
    assert batch["mask"].dtype == torch.bool and batch["mask"].shape == (3, 3) and batch["mask"].all()
    assert batch["index"].dtype == torch.long and batch["index"].tolist() == [4, 0, 2]
    torch.testing.assert_close(batch["text"][1], ds.features["text"][0])


def test_collate_classification_labels_are_long():
    ds = MSADataset(_features(4), np.array([0, 3, 1, 2]))
    assert collate_msa([ds[0], ds[1]])["labels"].dtype == torch.long
    four = MSADataset(_features(4), np.array([[0, 1, 0, 1]] * 4))
    batch = collate_msa([four[i] for i in range(4)])
    assert batch["labels"].shape == (4, 4) and batch["labels"].dtype == torch.long


def test_subset_of_modalities_gives_narrow_mask():
    f = _features(3)
    ds = MSADataset({"text": f["text"], "vision": f["vision"]}, np.zeros(3))
    batch = collate_msa([ds[0], ds[1]])
    assert batch["mask"].shape == (2, 2) and "audio" not in batch


def test_dataset_rejects_mismatched_counts_and_ranks():
    f = _features(4)
    with pytest.raises(ValueError, match="sample counts differ"):
        MSADataset(f, np.zeros(5))
    with pytest.raises(ValueError, match=r"text features must have shape \(N, T, D\)"):
        MSADataset({**f, "text": np.zeros((4, 6))}, np.zeros(4))
    with pytest.raises(KeyError, match="missing"):
        MSADataset(f, np.zeros(4), modalities=("text", "audio", "vision", "depth"))


def test_collate_rejects_inconsistent_samples():
    a = MSADataset(_features(2), np.zeros(2))
    rng = np.random.default_rng(1)
    other = {**_features(2, rng), "text": rng.standard_normal((2, 9, 6))}
    b = MSADataset(other, np.zeros(2))
    with pytest.raises(ValueError, match="text samples differ in shape"):
        collate_msa([a[0], b[0]])
    with pytest.raises(ValueError, match="empty"):
        collate_msa([])


def test_make_loader_order_is_repeatable_per_seed():
    ds = MSADataset(_features(32), np.arange(32, dtype=np.float32))

    def order(seed):
        return torch.cat([b["index"] for b in make_loader(ds, batch_size=8, shuffle=True, seed=seed)]).tolist()

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(order(0)) == list(range(32))
    assert torch.cat([b["index"] for b in make_loader(ds, 8)]).tolist() == list(range(32))


def _bundle(**over):
    splits = {s: MSADataset(_features(3), np.zeros(3)) for s in ("train", "valid", "test")}
    kw = dict(
        splits=splits,
        modalities=("text", "audio", "vision"),
        feature_dims={"text": 6, "audio": 2, "vision": 3},
        seq_lens={"text": 4, "audio": 5, "vision": 3},
        task="regression",
        out_dim=1,
        description="test data",
        name="t",
    )
    kw.update(over)
    return DataBundle(**kw)


def test_bundle_checks_splits_dims_and_task():
    b = _bundle()
    assert next(iter(b.loader("train", 2)))["text"].shape == (2, 4, 6)
    with pytest.raises(KeyError, match="needs splits"):
        _bundle(splits={"train": b.splits["train"]})
    with pytest.raises(ValueError, match="feature dims"):
        _bundle(feature_dims={"text": 7, "audio": 2, "vision": 3})
    with pytest.raises(ValueError, match="out_dim 1"):
        _bundle(out_dim=2)
    with pytest.raises(ValueError, match="task must be"):
        _bundle(task="ranking")


@pytest.mark.parametrize("shape, what", [((4, 3, 0), "feature size D = 0"), ((4, 0, 3), "sequence length T = 0")])
def test_dataset_rejects_a_modality_without_features_or_steps(shape, what):
    f = _features(4)
    with pytest.raises(ValueError, match=rf"modality 'vision' has {what} \(features of shape {re.escape(str(shape))}\)"):
        MSADataset({**f, "vision": np.zeros(shape, np.float32)}, np.zeros(4))
    with pytest.raises(ValueError, match="feature size D = 0"):
        _bundle(splits={s: MSADataset({**f, "pose": torch.zeros(4, 2, 0)}, np.zeros(4)) for s in ("train", "valid", "test")})


def test_extra_modality_travels_through_collate_in_order():
    f = {**_features(3), "pose": np.ones((3, 2, 5), np.float32)}
    ds = MSADataset(f, np.zeros(3), modalities=("text", "audio", "vision", "pose"))
    batch = collate_msa([ds[0], ds[2]])
    assert [k for k in batch if k not in ("labels", "mask", "index")] == ["text", "audio", "vision", "pose"]
    assert batch["pose"].shape == (2, 2, 5) and batch["mask"].shape == (2, 4)
    with pytest.raises(ValueError, match="reserved batch key"):
        MSADataset({"mask": f["text"]}, np.zeros(3))
