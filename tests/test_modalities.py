"""Modality sets: case enumeration, masks, the eta sampling protocol, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from promptkit.modalities import ModalitySet, check_mask


@pytest.mark.parametrize("m", [2, 3, 4, 5, 6])
def test_cases_enumerate_every_nonempty_subset_once(m):
    ms = ModalitySet([f"m{i}" for i in range(m)])
    cases = ms.cases
    assert len(cases) == 2**m - 1
    assert [c.id for c in cases] == list(range(2**m - 1))
    assert len({frozenset(c.available) for c in cases}) == 2**m - 1
    assert len(ms.incomplete_cases) == 2**m - 2
    assert ms.complete_case.complete and ms.complete_case.id == 2**m - 2
    masks = ms.masks_from_case_ids(torch.arange(2**m - 1))
    assert torch.equal(ms.case_ids_from_masks(masks), torch.arange(2**m - 1))


def test_default_case_ids_and_names_are_stable():
    ms = ModalitySet()
    assert [c.name for c in ms.cases] == ["{t}", "{a}", "{a,t}", "{v}", "{t,v}", "{a,v}", "{a,t,v}"]
    assert ms.case("{a,t}").id == 2
    assert ms.case(["audio", "text"]).missing == ("vision",)
    assert ms.case_mask("{a}", 2).tolist() == [[False, True, False]] * 2


@given(st.floats(0.0, 1.0), st.integers(0, 2**16))
def test_sampled_masks_are_valid_and_repeatable(eta, seed):
    ms = ModalitySet()
    a = ms.sample_masks(64, eta, torch.Generator().manual_seed(seed))
    b = ms.sample_masks(64, eta, torch.Generator().manual_seed(seed))
    assert torch.equal(a, b)
    check_mask(a, 3)


def test_sampling_protocol_frequencies():
    ms = ModalitySet()
    n = 60000
    ids = ms.case_ids_from_masks(ms.sample_masks(n, 0.7, torch.Generator().manual_seed(0)))
    freq = torch.bincount(ids, minlength=7).float() / n
    assert abs(freq[6].item() - 0.3) < 0.01  # complete
    for c in range(6):
        assert abs(freq[c].item() - 0.7 / 6) < 0.01  # each incomplete case ~11.7 %
    assert torch.all(ms.sample_masks(100, 0.0).all(1))
    assert not torch.any(ms.sample_masks(100, 1.0).all(1))


def test_bad_input_errors_name_the_problem():
    ms = ModalitySet()
    with pytest.raises(ValueError, match=r"eta must lie in \[0, 1\], got 1.5"):
        ms.sample_masks(4, 1.5)
    with pytest.raises(KeyError, match="unknown modality 'depth'"):
        ms.index("depth")
    with pytest.raises(ValueError, match="unique"):
        ModalitySet(["text", "text"])
    bad = torch.tensor([[True, False, False], [False, False, False]])
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\] have every modality missing"):
        ms.case_ids_from_masks(bad)
