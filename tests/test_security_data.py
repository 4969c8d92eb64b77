"""Data files read only themselves, and the size caps count what loading allocates (issue 24, items 5-8).

Each adversarial file is the issue's case scaled down: the cap is lowered through the limits
mechanism (``max_bytes=`` or ``$PROMPTKIT_MAX_DATA_BYTES``) so that a small file goes over it, and
``tracemalloc`` (which sees numpy's allocations) shows the refusal comes before the allocation.
"""

from __future__ import annotations

import pickle
import tracemalloc

import numpy as np
import pytest

from promptkit.data import DataFormatError, DataSizeError, load_data

h5py = pytest.importorskip("h5py")

SPLITS = ("train", "valid", "test")


def _peak(fn):
    """``(exception or result, peak traced bytes)`` of ``fn()``."""
    tracemalloc.start()
    try:
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001 - the caller checks which
            out = e
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _mult_splits(n_train=4, classes=None, shapes=None):
    """A MulT pickle's dict of zero float32 features ``(N, T, D)``, ``(T, D)`` = ``shapes[m]`` or (2, 3);
    ``classes`` gives the first train samples these (N,) int labels (the others 0/1) instead of
    regression labels."""
    out = {}
    for split in SPLITS:
        n = n_train if split == "train" else 4
        out[split] = {m: np.zeros((n, *(shapes or {}).get(m, (2, 3))), np.float32) for m in ("text", "audio", "vision")}
        out[split]["labels"] = (np.zeros((n, 1, 1), np.float32) if classes is None
                                else np.arange(n, dtype=np.int64) % 2)
    if classes is not None:
        out["train"]["labels"][: len(classes)] = classes
    return out


def _dump(obj, path):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)
    return path


def _h5(path, label=None, attrs=None, train=None):
    """An MMIN-style h5 file of 4 samples a split; ``train`` replaces datasets of the train split."""
    with h5py.File(path, "w") as f:
        for split in SPLITS:
            g = f.create_group(split)
            for m in ("text", "audio", "vision"):
                g.create_dataset(m, data=np.ones((4, 2, 3), np.float32))
            g.create_dataset("label", data=np.arange(4) % 2 if label is None or split != "train" else label)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
        for name, make in (train or {}).items():
            del f[f"train/{name}"]
            make(f, f["train"], name)
    return path


# --- item 5: nested lists are counted element by element before stacking ----------------------
def test_memo_shared_nested_list_is_counted_before_it_is_stacked(tmp_path, monkeypatch):
    row = [0.5] * 30
    seq = [row] * 50
    raw = _mult_splits(n_train=2000, shapes={"text": (50, 30)})
    raw["train"]["text"] = [seq] * 2000  # the memo stores row and seq once: 14 KB in the file, 23 MB stacked
    path = _dump(raw, tmp_path / "nested.pkl")
    assert path.stat().st_size < 200_000
    monkeypatch.setenv("PROMPTKIT_MAX_DATA_BYTES", "1M")
    err, peak = _peak(lambda: load_data(path))
    assert isinstance(err, DataSizeError), err
    assert ("nested.pkl: split 'train', key 'text' (a nested list stacking to shape (2000, 50, 30) of float64, each "
            "repeated reference counted) needs 22.9 MiB (24000000 bytes)") in str(err)
    assert "set by $PROMPTKIT_MAX_DATA_BYTES" in str(err)
    assert peak < 2_000_000, f"{peak} bytes allocated before the refusal"
    monkeypatch.delenv("PROMPTKIT_MAX_DATA_BYTES")
    bundle = load_data(path, max_bytes="200M")  # a genuine file loads once the cap is raised
    assert bundle.splits["train"].features["text"].shape == (2000, 50, 30)
    assert float(bundle.splits["train"].features["text"][1999, 49, 29]) == 0.5


@pytest.mark.parametrize("fmt", ["mult", "mmsa"])
def test_list_of_references_to_one_array_is_counted_per_reference(tmp_path, fmt):
    one = np.zeros((50, 30), np.float32)
    raw = _mult_splits(n_train=2000, shapes={"audio": (50, 30)})
    raw["train"]["audio"] = [one] * 2000  # 6 KB stored once, 12 MB once stacked
    if fmt == "mmsa":
        for split in SPLITS:
            raw[split]["regression_labels"] = raw[split].pop("labels").reshape(-1)
    path = _dump(raw, tmp_path / f"{fmt}.pkl")
    assert path.stat().st_size < 200_000
    err, peak = _peak(lambda: load_data(path, max_bytes="1M"))
    assert isinstance(err, DataSizeError), err
    assert (f"{fmt}.pkl: split 'train', key 'audio' (a nested list stacking to shape (2000, 50, 30) of float32, "
            "each repeated reference counted) needs 11.4 MiB (12000000 bytes), more than the size limit of 1.0 MiB "
            "(set by max_bytes)") in str(err)
    assert peak < 2_000_000, f"{peak} bytes allocated before the refusal"


def test_list_that_contains_itself_is_named(tmp_path):
    loop: list = []
    loop.append(loop)
    raw = _mult_splits()
    raw["valid"]["vision"] = loop
    with pytest.raises(DataFormatError, match=r"loop.pkl: split 'valid', key 'vision': expected an array, got a "
                                              r"list that contains itself"):
        load_data(_dump(raw, tmp_path / "loop.pkl"))


# --- item 6: dtype conversions are counted ----------------------------------------------------
def test_gzip_int8_h5_counts_its_float32_copy_before_reading(tmp_path):
    path = tmp_path / "int8.h5"
    with h5py.File(path, "w") as f:
        for split in SPLITS:
            n = 2000 if split == "train" else 4  # 3 MB of int8 declared in train, 12 MB once float32
            g = f.create_group(split)
            g.create_dataset("text", data=np.zeros((n, 50, 30), np.int8), compression="gzip")
            for m in ("audio", "vision"):
                g.create_dataset(m, data=np.ones((n, 2, 3), np.float32))
            g.create_dataset("label", data=np.zeros(n, np.float32))
    assert path.stat().st_size < 200_000
    err, peak = _peak(lambda: load_data(path, max_bytes="4M"))
    assert isinstance(err, DataSizeError), err
    assert ("int8.h5: split 'train', dataset 'text' (shape (2000, 50, 30), int8) as float32 (a copy), with its finite "
            "check, needs 14.3 MiB (15000000 bytes), more than the size limit of 4.0 MiB (set by max_bytes)"
            ) in str(err)
    assert peak < 1_000_000, f"{peak} bytes allocated before the refusal"
    bundle, peak = _peak(lambda: load_data(path, max_bytes="18M"))
    assert bundle.splits["train"].features["text"].dtype.is_floating_point and peak <= 18 * 2**20


def test_pickle_features_count_their_float32_copy(tmp_path):
    raw = _mult_splits(n_train=1000, shapes={"text": (50, 30)})
    raw["train"]["text"] = np.ones((1000, 50, 30), np.int8)  # 1.5 MB stored, 6 MB as float32
    path = _dump(raw, tmp_path / "int8.pkl")
    with pytest.raises(DataSizeError, match=r"int8.pkl: split 'train', key 'text' \(shape \(1000, 50, 30\), int8\) as "
                                            r"float32 \(a copy\), with its finite check, needs 7.2 MiB"):
        load_data(path, max_bytes="3M")
    assert load_data(path, max_bytes="12M").splits["train"].features["text"].sum() == 1000 * 50 * 30


# --- item 7: the class count is plausible ------------------------------------------------------
def test_h5_class_id_of_a_billion_is_refused_naming_file_key_and_value(tmp_path):
    path = _h5(tmp_path / "ids.h5", label=np.array([0, 1, 2, 10**9]))
    with pytest.raises(DataFormatError, match=r"ids.h5: split 'train', key 'label': class id 1000000000 would give the "
                                              r"model head 1000000001 classes, more than the 10000 plausible for this "
                                              r"file \(the default for 12 samples"):
        load_data(path)


def test_h5_num_classes_attribute_of_2_to_the_40_is_refused(tmp_path):
    path = _h5(tmp_path / "nc.h5", attrs={"num_classes": 2**40})
    with pytest.raises(DataFormatError, match=r"nc.h5: root attribute 'num_classes' = 1099511627776 would give the "
                                              r"model head 1099511627776 classes, more than the 10000 plausible"):
        load_data(path)


def test_pickle_class_ids_are_checked_and_the_limit_can_be_raised(tmp_path, monkeypatch):
    path = _dump(_mult_splits(classes=[10**9]), tmp_path / "m.pkl")
    with pytest.raises(DataFormatError, match=r"m.pkl: split 'train', key 'labels': class id 1000000000 would give"):
        load_data(path)
    path = _dump(_mult_splits(classes=[10_000]), tmp_path / "edge.pkl")  # 10001 classes for 12 samples
    with pytest.raises(DataFormatError, match=r"10001 classes, more than the 10000 plausible .*PROMPTKIT_MAX_CLASSES"):
        load_data(path)
    monkeypatch.setenv("PROMPTKIT_MAX_CLASSES", "20000")
    assert load_data(path).out_dim == 10_001


def test_mmsa_classification_labels_too_large_for_int64_are_refused(tmp_path):
    raw = _mult_splits()
    for split in SPLITS:
        raw[split]["regression_labels"] = raw[split].pop("labels").reshape(-1)
        raw[split]["classification_labels"] = np.array([0, 1, 2, 1], np.float32)
    raw["train"]["classification_labels"][3] = 1e30  # int64 would wrap it to a negative id
    with pytest.raises(DataFormatError, match=r"mmsa.pkl: split 'train', key 'classification_labels': class id "
                                              r"1\.0*\d*e\+30 \(sample index 3\) is not a plausible class id"):
        load_data(_dump(raw, tmp_path / "mmsa.pkl"), format="mmsa", task="classification")


def test_binary_tasks_beyond_the_class_limit_are_refused(tmp_path):
    raw = _mult_splits()
    for split in SPLITS:
        raw[split]["labels"] = np.zeros((4, 6000), np.int64)  # 6000 binary tasks: a 12000-output head
    with pytest.raises(DataFormatError, match=r"split 'train', key 'labels' of shape \(4, 6000\): 6000 binary tasks "
                                              r"would give the model head 12000 outputs \(2 per task\)"):
        load_data(_dump(raw, tmp_path / "tasks.pkl"), task="classification")


# --- item 8: h5 files read only themselves ----------------------------------------------------
@pytest.fixture
def outside(tmp_path):
    """A file that is not the data file: raw bytes and an h5 file with a dataset and a split group."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(range(1, 256)) * 4)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.full((4, 2, 3), 7, np.float32)
        g = f.create_group("valid")
        for m in ("text", "audio", "vision"):
            g[m] = np.ones((4, 2, 3), np.float32)
        g["label"] = np.arange(4) % 2
    return secret, other


def test_h5_external_raw_storage_is_refused_naming_the_dataset(tmp_path, outside):
    secret, _ = outside
    path = _h5(tmp_path / "ext.h5", train={
        "text": lambda f, g, n: g.create_dataset(n, shape=(4, 2, 3), dtype="u1", external=[(str(secret), 0, 24)]),
    })  # without the check the train features are the first 24 bytes of secret.bin
    with pytest.raises(DataFormatError, match=r"ext.h5: split 'train', dataset 'text' keeps its data in external "
                                              r"file\(s\) \['.*secret.bin'\]"):
        load_data(path)


def test_h5_virtual_dataset_is_refused_naming_the_dataset(tmp_path, outside):
    _, other = outside

    def virtual(f, g, n):
        layout = h5py.VirtualLayout(shape=(4, 2, 3), dtype="f4")
        layout[:] = h5py.VirtualSource(str(other), "x", shape=(4, 2, 3))
        g.create_virtual_dataset(n, layout)

    path = _h5(tmp_path / "virt.h5", train={"audio": virtual})
    with pytest.raises(DataFormatError, match=r"virt.h5: split 'train', dataset 'audio' is a virtual dataset \(its "
                                              r"data is mapped from \['.*other.h5'\]\)"):
        load_data(path)


def test_h5_external_links_are_refused_before_they_are_followed(tmp_path, outside):
    _, other = outside
    path = _h5(tmp_path / "link.h5", train={"vision": lambda f, g, n: g.__setitem__(n, h5py.ExternalLink(other, "x"))})
    with pytest.raises(DataFormatError, match=r"link.h5: split 'train', dataset 'vision' is an external link to 'x' in "
                                              r"file '.*other.h5'"):
        load_data(path)
    path = _h5(tmp_path / "group.h5")
    with h5py.File(path, "a") as f:
        del f["valid"]
        f["valid"] = h5py.ExternalLink(other, "valid")
    with pytest.raises(DataFormatError, match=r"group.h5: split 'valid' is an external link to 'valid'"):
        load_data(path)


def test_h5_soft_links_are_followed_within_the_file_only(tmp_path, outside):
    _, other = outside

    def through_external(f, g, n):
        f["valid/out"] = h5py.ExternalLink(other, "/")
        g[n] = h5py.SoftLink("/valid/out/x")

    path = _h5(tmp_path / "soft.h5", train={"text": through_external})
    with pytest.raises(DataFormatError, match=r"soft.h5: split 'train', dataset 'text' \(a soft link to "
                                              r"'/valid/out/x'\) is an external link to '/' in file '.*other.h5'"):
        load_data(path, modalities=["text", "audio", "vision"])
    path = _h5(tmp_path / "dangling.h5", train={"text": lambda f, g, n: g.__setitem__(n, h5py.SoftLink("/nowhere"))})
    with pytest.raises(DataFormatError, match=r"dangling.h5: split 'train', dataset 'text' \(a soft link to "
                                              r"'/nowhere'\): 'nowhere' does not exist in '/'"):
        load_data(path)

    def inside(f, g, n):
        f["valid/copy"] = np.full((4, 2, 3), 2, np.float32)
        g[n] = h5py.SoftLink("/valid/copy")

    bundle = load_data(_h5(tmp_path / "inside.h5", train={"text": inside}), modalities=["text", "audio", "vision"])
    assert float(bundle.splits["train"].features["text"].sum()) == 48.0
