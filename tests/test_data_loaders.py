import builtins
import codecs
import io
import os
import pickle
import sys

import numpy as np
import pytest
import torch

from promptkit.data import (
    AudioInfWarning,
    CorruptPickleError,
    DataFormatError,
    DataSizeError,
    UnsafePickleError,
    load_data,
    load_h5,
    load_mmsa_pickle,
    load_mult_pickle,
    safe_load,
)

SIZES = {"train": 6, "valid": 3, "test": 4}


def _mult(labels="regression", seed=0, split_names=("train", "valid", "test")):
    """A MulT pickle's dict: {split: {'text','audio','vision','labels'}} with (N, T, D) arrays."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, canon in zip(split_names, ("train", "valid", "test")):
        n = SIZES[canon]
        d = {
            "text": rng.standard_normal((n, 5, 300)).astype(np.float32),
            "audio": rng.standard_normal((n, 5, 5)).astype(np.float32),
            "vision": rng.standard_normal((n, 5, 20)).astype(np.float32),
            "id": np.array([[f"vid{i}", "0", "1"] for i in range(n)], dtype=object),
        }
        if labels == "regression":
            d["labels"] = rng.uniform(-3, 3, (n, 1, 1)).astype(np.float32)
        else:  # IEMOCAP: four binary tasks, one-hot along the last axis
            hot = rng.integers(0, 2, (n, 4))
            d["labels"] = np.eye(2, dtype=np.float32)[hot]
        out[name] = d
    return out


def _mmsa(seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in SIZES.items():
        out[split] = {
            "raw_text": [f"sentence {i}" for i in range(n)],
            "id": [f"clip_{i}" for i in range(n)],
            "text": rng.standard_normal((n, 7, 768)).astype(np.float32),
            "text_bert": rng.integers(0, 100, (n, 3, 7)).astype(np.float32),
            "audio": rng.standard_normal((n, 9, 33)).astype(np.float32),
            "vision": rng.standard_normal((n, 8, 709)).astype(np.float32),
            "audio_lengths": [9] * n,
            "vision_lengths": [8] * n,
            "regression_labels": rng.uniform(-1, 1, n).astype(np.float32),
            "classification_labels": rng.integers(0, 3, n).astype(np.float32),
        }
    return out


class _Reduce:
    """Pickles as ``func(*args)``."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _dump(obj, path, protocol=4):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


# --- MulT --------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_mult_regression_pickle_loads(tmp_path, protocol):
    raw = _mult()
    path = _dump(raw, tmp_path / "mosi_data.pkl", protocol)
    bundle = load_data(path)
    assert bundle.task == "regression" and bundle.out_dim == 1
    assert bundle.feature_dims == {"text": 300, "audio": 5, "vision": 20}
    assert bundle.seq_lens == {"text": 5, "audio": 5, "vision": 5}
    assert {s: len(d) for s, d in bundle.splits.items()} == SIZES
    assert str(path) in bundle.description and bundle.name == "mosi_data" and bundle.info["format"] == "mult"
    np.testing.assert_array_equal(bundle.splits["test"].features["vision"].numpy(), raw["test"]["vision"])
    np.testing.assert_array_equal(bundle.splits["train"].labels.numpy(), raw["train"]["labels"].reshape(-1))
    batch = next(iter(bundle.loader("valid", 3)))
    assert batch["labels"].shape == (3,) and batch["labels"].dtype == torch.float32


def test_mult_iemocap_pickle_gives_four_binary_tasks(tmp_path):
    raw = _mult(labels="iemocap", split_names=("train", "dev", "test"))
    bundle = load_mult_pickle(_dump(raw, tmp_path / "iemocap_data.pkl"))
    assert bundle.task == "classification" and bundle.out_dim == 8
    y = bundle.splits["valid"].labels
    assert y.shape == (3, 4) and y.dtype == torch.long
    np.testing.assert_array_equal(y.numpy(), raw["dev"]["labels"].argmax(-1))
    assert next(iter(bundle.loader("train", 4)))["labels"].shape == (4, 4)


def test_not_one_hot_iemocap_labels_are_refused(tmp_path):
    raw = _mult(labels="iemocap")
    raw["test"]["labels"][2, 1] = [1.0, 1.0]
    with pytest.raises(DataFormatError, match=r"split 'test', key 'labels'.*index\(es\) \[2\] are not one-hot"):
        load_mult_pickle(_dump(raw, tmp_path / "x.pkl"))


def test_audio_neg_inf_becomes_zero_with_a_counting_warning(tmp_path):
    raw = _mult()
    raw["train"]["audio"][1, 2, :3] = -np.inf
    raw["test"]["audio"][0, 0, 0] = -np.inf
    with pytest.warns(AudioInfWarning) as record:
        bundle = load_data(_dump(raw, tmp_path / "m.pkl"))
    messages = [str(w.message) for w in record]
    assert any("split 'train'" in m and "replaced 3 -inf" in m for m in messages)
    assert any("split 'test'" in m and "replaced 1 -inf" in m for m in messages)
    audio = bundle.splits["train"].features["audio"]
    assert torch.isfinite(audio).all() and (audio[1, 2, :3] == 0).all()


@pytest.mark.parametrize("modality, value", [("vision", np.nan), ("text", np.inf), ("audio", np.nan), ("audio", np.inf)])
def test_nan_or_inf_features_are_errors_naming_split_modality_index(tmp_path, modality, value):
    raw = _mult()
    raw["valid"][modality][2, 1, 0] = value
    with pytest.raises(DataFormatError, match=rf"split 'valid', modality '{modality}'.*sample index\(es\) \[2\]"):
        load_data(_dump(raw, tmp_path / "m.pkl"))


def test_mismatched_sample_counts_are_errors(tmp_path):
    raw = _mult()
    raw["train"]["vision"] = raw["train"]["vision"][:5]
    with pytest.raises(DataFormatError, match=r"split 'train' has mismatched sample counts .*'vision': 5"):
        load_data(_dump(raw, tmp_path / "m.pkl"))


def test_empty_split_is_an_error(tmp_path):
    raw = _mult()
    raw["test"] = {k: v[:0] for k, v in raw["test"].items()}
    with pytest.raises(DataFormatError, match="split 'test' is empty"):
        load_data(_dump(raw, tmp_path / "m.pkl"))


def test_wrong_rank_missing_key_unknown_key_and_split(tmp_path):
    raw = _mult()
    raw["train"]["text"] = raw["train"]["text"].mean(1)
    with pytest.raises(DataFormatError, match=r"m.pkl: split 'train', key 'text': expected an array of rank 3"):
        load_data(_dump(raw, tmp_path / "m.pkl"))
    raw = _mult()
    del raw["valid"]["labels"]
    with pytest.raises(DataFormatError, match=r"split 'valid' is missing key\(s\) \['labels'\]"):
        load_data(_dump(raw, tmp_path / "m.pkl"))
    raw = _mult()
    raw["test"]["depth"] = raw["test"]["vision"]
    with pytest.raises(DataFormatError, match=r"split 'test' has unknown key\(s\) \['depth'\]"):
        load_data(_dump(raw, tmp_path / "m.pkl"))
    raw = _mult()
    raw["extra"] = raw.pop("test")
    with pytest.raises(DataFormatError, match="unknown split 'extra'"):
        load_data(_dump(raw, tmp_path / "m.pkl"))
    raw = _mult()
    del raw["test"]
    with pytest.raises(DataFormatError, match=r"missing split\(s\) \['test'\]"):
        load_data(_dump(raw, tmp_path / "m.pkl"))


def test_feature_size_must_agree_across_splits(tmp_path):
    raw = _mult()
    raw["test"]["audio"] = np.zeros((4, 5, 6), np.float32)
    with pytest.raises(DataFormatError, match=r"modality 'audio' has a different feature size per split"):
        load_data(_dump(raw, tmp_path / "m.pkl"))


def test_modalities_argument_selects_and_validates(tmp_path):
    path = _dump(_mult(), tmp_path / "m.pkl")
    bundle = load_data(path, modalities=["vision", "text"])
    assert bundle.modalities == ("text", "vision")
    with pytest.raises(DataFormatError, match=r"m.pkl: split 'train' is missing key\(s\) \['depth'\]; the keys present "
                                              r"are \['audio', 'id', 'labels', 'text', 'vision'\]"):
        load_data(path, modalities=["text", "depth"])
    for bad in (["text", "2d"], ["text", "pose-x"], [3]):
        with pytest.raises(ValueError, match="must be a Python identifier"):
            load_data(path, modalities=bad)
    with pytest.raises(ValueError, match="reserved batch key"):
        load_data(path, modalities=["text", "mask"])
    with pytest.raises(ValueError, match="without repeats"):
        load_data(path, modalities=["text", "text"])


# --- MMSA --------------------------------------------------------------------------------------
def test_mmsa_pickle_uses_regression_labels(tmp_path):
    raw = _mmsa()
    path = _dump(raw, tmp_path / "unaligned_39.pkl")
    bundle = load_data(path)  # detected by 'regression_labels'
    assert bundle.info["format"] == "mmsa" and bundle.task == "regression"
    assert bundle.feature_dims == {"text": 768, "audio": 33, "vision": 709}
    assert bundle.seq_lens == {"text": 7, "audio": 9, "vision": 8}
    np.testing.assert_array_equal(bundle.splits["valid"].labels.numpy(), raw["valid"]["regression_labels"])
    cls = load_mmsa_pickle(path, task="classification")
    assert cls.task == "classification" and cls.out_dim == 3
    assert cls.splits["train"].labels.dtype == torch.long


def test_mmsa_without_text_features_is_refused(tmp_path):
    raw = _mmsa()
    for d in raw.values():
        del d["text"]
    path = _dump(raw, tmp_path / "bert_only.pkl")
    with pytest.raises(DataFormatError, match="only 'text_bert'"):
        load_data(path)
    assert load_data(path, modalities=["audio", "vision"]).modalities == ("audio", "vision")


def test_explicit_format_overrides_detection(tmp_path):
    path = _dump(_mult(), tmp_path / "m.pkl")
    with pytest.raises(DataFormatError, match=r"missing key\(s\) \['regression_labels'\]"):
        load_data(path, format="mmsa")
    with pytest.raises(ValueError, match="unknown data format"):
        load_data(path, format="csv")
    assert load_data(path, format="auto").info["format"] == "mult"


def test_generator_options_are_refused_for_files(tmp_path):
    path = _dump(_mult(), tmp_path / "m.pkl")
    with pytest.raises(TypeError, match=r"\['sizes'\] apply only to source='synthetic'"):
        load_data(path, sizes=(1, 1, 1))


# --- h5 ----------------------------------------------------------------------------------------
def _write_h5(path, split_names=("train", "valid", "test"), names=("text", "audio", "vision"), label="label"):
    """An MMIN-style h5 file: per split one (N, T, D) float32 dataset per name and (N,) int class ids."""
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for split, canon in zip(split_names, ("train", "valid", "test")):
            n = SIZES[canon]
            g = f.create_group(split)
            for name, (t, d) in zip(names, ((4, 1024), (6, 130), (5, 342), (3, 12))):
                g.create_dataset(name, data=rng.standard_normal((n, t, d)).astype(np.float32))
            g.create_dataset(label, data=np.arange(n) % 4)
    return path


def test_h5_mmin_layout_loads_as_four_classes(tmp_path):
    path = _write_h5(tmp_path / "iemocap.h5")
    bundle = load_data(path)
    assert bundle.info["format"] == "h5" and bundle.task == "classification" and bundle.out_dim == 4
    assert bundle.feature_dims == {"text": 1024, "audio": 130, "vision": 342}
    batch = next(iter(bundle.loader("test", 4)))
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [0, 1, 2, 3]


def test_h5_accepts_mmin_modality_names_and_dev_split(tmp_path):
    path = _write_h5(tmp_path / "d.hdf5", split_names=("train", "dev", "test"), names=("L", "A", "V"), label="labels")
    bundle = load_h5(path)
    assert bundle.modalities == ("text", "audio", "vision") and len(bundle.splits["valid"]) == 3


def test_h5_unknown_dataset_is_an_error(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = _write_h5(tmp_path / "d.h5")
    with h5py.File(path, "a") as f:
        f["train"].create_dataset("depth", data=np.zeros((6, 2, 2)))
    with pytest.raises(DataFormatError, match="split 'train' has unknown dataset 'depth'"):
        load_data(path)


def test_h5_without_h5py_says_how_to_install(tmp_path, monkeypatch):
    path = tmp_path / "d.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n")
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"promptkit-msa\[h5\]"):
        load_data(path)


# --- unsafe / broken pickles -------------------------------------------------------------------
class _SystemPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload, name", [(_SystemPayload, "system"), (_EvalPayload, "builtins.eval")])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, payload, name):
    marker = tmp_path / "pwned"
    raw = _mult()
    raw["train"]["labels"] = payload(marker)
    path = _dump(raw, tmp_path / "evil.pkl")
    with pytest.raises(UnsafePickleError, match=rf"evil.pkl.*tried to load code/global .*{name}"):
        load_data(path)
    with pytest.raises(pickle.UnpicklingError):  # the error is an UnpicklingError subclass
        safe_load(path)
    assert not marker.exists()


def test_truncated_pickle_is_a_clear_error_naming_the_file(tmp_path):
    data = pickle.dumps(_mult(), protocol=4)
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptPickleError, match=r"cut.pkl: the file is truncated or is not a pickle"):
        load_data(path)


def test_safe_load_round_trips_arrays_and_containers():
    obj = {"a": np.arange(6.0).reshape(2, 3).T, "b": [np.float32(1.5), None, True, (1, "x")], "c": {1, 2},
           "d": b"raw", "e": np.array(["u", "vv"], dtype=object)}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        back = safe_load(io.BytesIO(pickle.dumps(obj, protocol=protocol)))
        np.testing.assert_array_equal(back["a"], obj["a"])
        assert back["b"] == obj["b"] and back["c"] == {1, 2} and back["d"] == b"raw"
        assert back["e"].tolist() == ["u", "vv"]


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        load_data(tmp_path / "nope.pkl")


# --- extra modalities (4-modality fixtures, one per format) ------------------------------------
FOUR = ["text", "audio", "vision", "pose"]


def _with_pose(raw, t=4, d=11, seed=1, lengths=False):
    rng = np.random.default_rng(seed)
    for split in raw.values():
        n = len(split["audio"])
        split["pose"] = rng.standard_normal((n, t, d)).astype(np.float32)
        if lengths:
            split["pose_lengths"] = np.full(n, t)
    return raw


def test_mult_pickle_with_a_fourth_modality(tmp_path):
    raw = _with_pose(_mult())
    path = _dump(raw, tmp_path / "four.pkl")
    bundle = load_data(path, modalities=FOUR)
    assert bundle.modalities == tuple(FOUR)
    assert bundle.feature_dims == {"text": 300, "audio": 5, "vision": 20, "pose": 11}
    assert bundle.seq_lens["pose"] == 4
    np.testing.assert_array_equal(bundle.splits["valid"].features["pose"].numpy(), raw["valid"]["pose"])
    batch = next(iter(bundle.loader("train", 3, shuffle=False)))
    assert batch["pose"].shape == (3, 4, 11) and batch["mask"].shape == (3, 4)
    # the order rule: standard ones canonical first, extra ones after, in the order given
    assert load_data(path, modalities=["pose", "vision", "text"]).modalities == ("text", "vision", "pose")
    # the standard three alone, asked for by name, ignore 'pose'; by default an unknown key is an error
    assert load_data(path, modalities=["text", "audio", "vision"]).modalities == ("text", "audio", "vision")
    with pytest.raises(DataFormatError, match=r"four.pkl: split 'train' has unknown key\(s\) \['pose'\].*"
                                              r"pass modalities=\[\.\.\., 'name'\]"):
        load_data(path)


def test_extra_modality_absent_from_one_split_names_file_split_key_and_keys(tmp_path):
    raw = _with_pose(_mult())
    del raw["test"]["pose"]
    with pytest.raises(DataFormatError, match=r"m.pkl: split 'test' is missing key\(s\) \['pose'\]; the keys present "
                                              r"are \['audio', 'id', 'labels', 'text', 'vision'\]"):
        load_data(_dump(raw, tmp_path / "m.pkl"), modalities=FOUR)


def test_mmsa_pickle_with_a_fourth_modality_and_its_lengths(tmp_path):
    raw = _with_pose(_mmsa(), lengths=True)
    path = _dump(raw, tmp_path / "four_mmsa.pkl")
    bundle = load_data(path, modalities=["pose", "text", "audio", "vision"])
    assert bundle.info["format"] == "mmsa" and bundle.modalities == tuple(FOUR)
    assert bundle.feature_dims == {"text": 768, "audio": 33, "vision": 709, "pose": 11}
    np.testing.assert_array_equal(bundle.splits["test"].features["pose"].numpy(), raw["test"]["pose"])
    raw["valid"]["pose_lengths"] = raw["valid"]["pose_lengths"][:2]
    with pytest.raises(DataFormatError, match=r"split 'valid', key 'pose_lengths': expected shape \(3,\) \(one length "
                                              r"per sample of 'pose', which has 3\), got \(2,\)"):
        load_data(_dump(raw, tmp_path / "bad.pkl"), modalities=FOUR)


def test_h5_with_a_fourth_modality(tmp_path):
    path = _write_h5(tmp_path / "four.h5", names=("L", "A", "V", "pose"))
    bundle = load_data(path, modalities=FOUR)
    assert bundle.modalities == tuple(FOUR) and bundle.task == "classification"
    assert bundle.feature_dims == {"text": 1024, "audio": 130, "vision": 342, "pose": 12}
    assert bundle.seq_lens["pose"] == 3
    assert next(iter(bundle.loader("test", 4)))["pose"].shape == (4, 3, 12)
    with pytest.raises(DataFormatError, match=r"split '\w+' has unknown dataset 'pose'.*modalities=\[\.\.\., 'pose'\]"):
        load_data(path)
    with pytest.raises(DataFormatError, match=r"four.h5: split '\w+' is missing dataset\(s\) \['gaze'\]; the datasets "
                                              r"present are \['A', 'L', 'V', 'label', 'pose'\]"):
        load_data(path, modalities=["text", "gaze"])


def test_neg_inf_is_replaced_in_audio_only(tmp_path):
    raw = _with_pose(_mult())
    raw["train"]["pose"][0, 0, 0] = -np.inf
    with pytest.raises(DataFormatError, match=r"split 'train', modality 'pose' has 1 NaN/inf value\(s\) in sample "
                                              r"index\(es\) \[0\]"):
        load_data(_dump(raw, tmp_path / "m.pkl"), modalities=FOUR)


# --- size limits -------------------------------------------------------------------------------
def test_small_h5_declaring_tens_of_gib_is_refused_before_reading(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "bomb.h5"
    with h5py.File(path, "w") as f:
        for split in ("train", "valid", "test"):
            g = f.create_group(split)
            for m in ("text", "audio", "vision"):
                g.create_dataset(m, data=np.zeros((2, 1, 1), np.float32))
            g.create_dataset("label", data=np.arange(2))
        del f["train/audio"]  # 40 GB declared, never written: HDF5 would return its fill value
        f["train"].create_dataset("audio", shape=(100_000, 1_000, 100), dtype="f4", chunks=(1, 1000, 100))
    assert path.stat().st_size < 50_000
    with pytest.raises(DataSizeError, match=r"bomb.h5: split 'train', dataset 'audio' \(shape \(100000, 1000, 100\), "
                                            r"float32\) declares 37.3 GiB \(40000000000 bytes\), more than the size "
                                            r"limit of 256.0 MiB \(the default for a .* file"):
        load_data(path)


def test_max_bytes_overrides_the_size_limit(tmp_path):
    path = _write_h5(tmp_path / "d.h5")
    with pytest.raises(DataSizeError, match=r"set by max_bytes"):
        load_data(path, max_bytes=10_000)
    assert load_data(path, max_bytes="1G").out_dim == 4
    pkl = _dump(_mult(), tmp_path / "m.pkl")
    with pytest.raises(DataSizeError, match=r"m.pkl at 'train' > 'text': an array of shape \(6, 5, 300\)"):
        load_data(pkl, max_bytes=10_000)
    with pytest.raises(DataSizeError):
        load_mult_pickle(pkl, max_bytes=10_000)


# --- clear errors for malformed content --------------------------------------------------------
def test_ragged_nested_list_names_file_split_and_key(tmp_path):
    raw = _mmsa()
    raw["train"]["audio"] = [np.zeros((9, 33), np.float32), np.zeros((5, 33), np.float32)] * 3
    with pytest.raises(DataFormatError, match=r"m.pkl: split 'train', key 'audio': expected an array \(N, T, D\), got a "
                                              r"ragged nested list"):
        load_data(_dump(raw, tmp_path / "m.pkl"))
    raw = _mmsa()
    raw["valid"]["regression_labels"] = [[0.1], [0.2, 0.3], [0.4]]
    with pytest.raises(DataFormatError, match=r"split 'valid', key 'regression_labels': expected labels .* ragged"):
        load_data(_dump(raw, tmp_path / "m.pkl"))


def test_codec_other_than_latin1_names_file_and_key(tmp_path):
    raw = _mult()
    raw["train"]["id"] = _Reduce(codecs.encode, ("vid0", "rot13"))
    with pytest.raises(UnsafePickleError, match=r"m.pkl at 'train' > 'id': _codecs.encode is only admitted with the "
                                                r"latin-1 codec"):
        load_data(_dump(raw, tmp_path / "m.pkl"))


@pytest.mark.parametrize("value, shown", [("four", "a string"), (4.0, "dtype float64"), ([4, 4], "dtype int64")])
def test_h5_num_classes_attribute_must_be_an_integer(tmp_path, value, shown):
    h5py = pytest.importorskip("h5py")
    path = _write_h5(tmp_path / "d.h5")
    with h5py.File(path, "a") as f:
        f.attrs["num_classes"] = value
    with pytest.raises(DataFormatError, match=rf"d.h5: root attribute 'num_classes': expected an integer .*got {shown}"):
        load_data(path)
    with h5py.File(path, "a") as f:
        f.attrs["num_classes"] = np.int32(6)
    assert load_data(path).out_dim == 6


def test_mmsa_labels_with_the_wrong_count_are_blamed_not_lengths(tmp_path):
    raw = _mmsa()
    raw["train"]["regression_labels"] = raw["train"]["regression_labels"][:5]
    with pytest.raises(DataFormatError) as info:
        load_data(_dump(raw, tmp_path / "m.pkl"))
    msg = str(info.value)
    assert "split 'train' has mismatched sample counts" in msg
    assert "'regression_labels' (5) disagree(s) with the 6 samples of the others" in msg
    assert "lengths" not in msg
    raw = _mmsa()
    raw["test"]["audio_lengths"] = raw["test"]["audio_lengths"][:3]
    with pytest.raises(DataFormatError, match=r"split 'test', key 'audio_lengths': expected shape \(4,\) \(one length "
                                              r"per sample of 'audio'"):
        load_data(_dump(raw, tmp_path / "m.pkl"))


@pytest.mark.parametrize("axis, what", [(2, "feature size D = 0"), (1, "sequence length T = 0")])
def test_modality_of_width_or_length_zero_is_an_error(tmp_path, axis, what):
    raw = _mult()
    for split in raw.values():
        shape = list(split["vision"].shape)
        shape[axis] = 0
        split["vision"] = np.zeros(shape, np.float32)
    with pytest.raises(DataFormatError, match=rf"split 'train', key 'vision': modality 'vision' has {what}"):
        load_data(_dump(raw, tmp_path / "m.pkl"))
    path = _write_h5(tmp_path / "d.h5")
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "a") as f:
        for split in ("train", "valid", "test"):
            shape = list(f[split]["audio"].shape)
            shape[axis] = 0
            del f[split]["audio"]
            f[split].create_dataset("audio", data=np.zeros(shape, np.float32))
    with pytest.raises(DataFormatError, match=rf"modality 'audio' has {what}"):
        load_data(path)


def test_mmsa_object_arrays_of_strings_load(tmp_path):
    raw = _mmsa()
    for split in raw.values():  # as MMSA writes them: numpy object arrays of str
        split["raw_text"] = np.array(split["raw_text"], dtype=object)
        split["id"] = np.array(split["id"], dtype=object)
    for protocol in (2, 4, 5):
        path = _dump(raw, tmp_path / f"mmsa{protocol}.pkl", protocol)
        assert load_data(path).feature_dims["vision"] == 709
        back = safe_load(path)
        assert back["train"]["raw_text"].dtype == object and back["train"]["raw_text"][1] == "sentence 1"


def test_data_describe_reports_the_task_load_data_finds(tmp_path, capsys):
    from promptkit.cli import main

    path = _write_h5(tmp_path / "iemocap.h5")
    assert load_data(path).task == "classification"
    assert main(["data", "describe", "--data", str(path)]) == 0
    out = capsys.readouterr().out
    assert "task classification, out_dim 4" in out and "counts 0:" in out
    iemocap = _dump(_mult(labels="iemocap"), tmp_path / "iemocap_data.pkl")  # one-hot: four binary tasks
    assert main(["data", "describe", "--data", str(iemocap)]) == 0
    assert "task classification, out_dim 8" in capsys.readouterr().out
    mosi = _dump(_mult(), tmp_path / "mosi_data.pkl")
    assert main(["data", "describe", "--data", str(mosi)]) == 0
    assert "task regression, out_dim 1" in capsys.readouterr().out


# --- MMSA's text_bert as token ids (text="tokens") --------------------------------------------
def _mmsa_bert(seed=0, dtype=np.float64):
    """An MMSA pickle as MMSA writes it: ``text_bert`` (N, 3, T) as floats holding BERT ids
    ([CLS] 101 ... [SEP] 102, right-padded with 0), its attention mask and zero segment ids."""
    raw = _mmsa(seed)
    rng = np.random.default_rng(seed + 1)
    for d in raw.values():
        n = len(d["id"])
        tb = np.zeros((n, 3, 7), dtype=dtype)
        for i in range(n):
            k = int(rng.integers(3, 8))  # tokens incl. [CLS] and [SEP]
            tb[i, 0, :k] = [101, *rng.integers(1000, 29000, k - 2), 102]
            tb[i, 1, :k] = 1
        d["text_bert"] = tb
    return raw


@pytest.mark.parametrize("dtype", [np.float64, np.int64])
def test_mmsa_text_bert_reads_as_token_ids(tmp_path, dtype):
    raw = _mmsa_bert(dtype=dtype)
    path = _dump(raw, tmp_path / "bert.pkl")
    bundle = load_data(path, text="tokens", vocab_size=30522)
    assert bundle.feature_dims == {"text": 30522, "audio": 33, "vision": 709}
    assert bundle.seq_lens == {"text": 7, "audio": 9, "vision": 8} and bundle.token_modalities == ("text",)
    x = bundle.splits["valid"].features["text"]
    assert x.dtype == torch.int64
    np.testing.assert_array_equal(x.numpy(), raw["valid"]["text_bert"].astype(np.int64))
    np.testing.assert_array_equal(bundle.splits["valid"].features["audio"].numpy(), raw["valid"]["audio"])
    # without vocab_size: the largest id in any split + 1
    largest = max(int(d["text_bert"][:, 0].max()) for d in raw.values())
    assert load_mmsa_pickle(path, text="tokens").feature_dims["text"] == largest + 1
    assert load_data(path).feature_dims["text"] == 768  # the default stays the features


def test_mmsa_text_bert_errors_name_the_split_key_and_problem(tmp_path):
    raw = _mmsa_bert()
    path = _dump(raw, tmp_path / "bert.pkl")
    with pytest.raises(DataFormatError, match=r"split 'train'.*ids outside \[0, 5000\).*vocab_size = 5000"):
        load_data(path, text="tokens", vocab_size=5000)
    bad = _mmsa_bert()
    bad["test"]["text_bert"] = bad["test"]["text_bert"][:, 0]  # ids only, (N, T)
    with pytest.raises(DataFormatError, match=r"split 'test', key 'text_bert'.*shape \(N, 3, T\)"):
        load_data(_dump(bad, tmp_path / "flat.pkl"), text="tokens")
    frac = _mmsa_bert()
    frac["valid"]["text_bert"][1, 0, 2] = 1000.5
    with pytest.raises(DataFormatError, match=r"split 'valid'.*whole numbers.*\[1\]"):
        load_data(_dump(frac, tmp_path / "frac.pkl"), text="tokens")
    mask = _mmsa_bert()
    mask["train"]["text_bert"][0, 1, 0] = 2
    with pytest.raises(DataFormatError, match="attention mask other than 0/1"):
        load_data(_dump(mask, tmp_path / "mask.pkl"), text="tokens")
    gone = _mmsa_bert()
    del gone["valid"]["text_bert"]
    with pytest.raises(DataFormatError, match="split 'valid' has no key 'text_bert'"):
        load_data(_dump(gone, tmp_path / "gone.pkl"), text="tokens")
    with pytest.raises(ValueError, match="a mult file holds text features only"):
        load_data(_dump(_mult(), tmp_path / "m.pkl"), text="tokens")
    with pytest.raises(ValueError, match="vocab_size applies to text='tokens' only"):
        load_data(path, vocab_size=30522)
    with pytest.raises(ValueError, match="modalities are"):
        load_data(path, text="tokens", modalities=["audio", "vision"])


def test_mmsa_with_only_text_bert_points_at_text_tokens(tmp_path):
    raw = _mmsa_bert()
    for d in raw.values():
        del d["text"]
    path = _dump(raw, tmp_path / "bert_only.pkl")
    with pytest.raises(DataFormatError, match="text='tokens'"):
        load_data(path)
    assert load_data(path, text="tokens").token_modalities == ("text",)
