"""Modality sets: case enumeration, masks, the eta sampling protocol, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from promptkit.modalities import MissingCase, ModalitySet, abbreviations, check_mask


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


# --- names for any modality set --------------------------------------------------------------


def test_unique_initials_keep_their_initials():
    assert ModalitySet(["l", "a", "v"]).case_names == {0: "{l}", 1: "{a}", 2: "{a,l}", 3: "{v}", 4: "{l,v}",
                                                       5: "{a,v}", 6: "{a,l,v}"}
    ms = ModalitySet(["text", "audio", "vision", "depth"])
    assert ms.abbrevs == {"text": "t", "audio": "a", "vision": "v", "depth": "d"}
    assert ms.case(["depth", "text"]).name == "{d,t}"


def test_shared_initials_get_the_shortest_unique_prefixes():
    ms = ModalitySet(["text", "audio", "vision", "pose", "physio"])
    assert ms.abbrevs == {"text": "t", "audio": "a", "vision": "v", "pose": "po", "physio": "ph"}
    assert ms.case(["pose", "text"]).name == "{po,t}"
    assert ms.complete_case.name == "{a,ph,po,t,v}"
    assert abbreviations(["text", "thermal", "audio"]) == {"text": "te", "thermal": "th", "audio": "a"}
    # a name that is a prefix of another keeps its whole self
    assert abbreviations(["a", "ab", "abc"]) == {"a": "a", "ab": "ab", "abc": "abc"}
    assert abbreviations(["pose", "poses"]) == {"pose": "pose", "poses": "poses"}


@given(st.lists(st.text("pqrs", min_size=1, max_size=4), min_size=2, max_size=5, unique=True))
def test_names_are_unique_and_map_one_to_one_to_ids(names):
    ms = ModalitySet(names)
    by_id = ms.case_names
    assert len(set(by_id.values())) == len(by_id) == 2 ** len(names) - 1
    for i, name in by_id.items():
        assert ms.case(name).id == i == ms.case_id(name)
        assert ms.case_name(i) == name == ms.cases[i].name


def test_case_lookup_by_name_in_any_order_with_abbreviations_or_full_names():
    ms = ModalitySet(["text", "audio", "vision", "pose", "physio"])
    want = ms.case(["text", "pose"])
    assert ms.case("{po,t}") is want
    assert ms.case("{t,po}") is want and ms.case("{pose,text}") is want and ms.case("{t, pose}") is want
    assert ms.case("complete") is ms.complete_case and ms.case_id("complete") == 30
    assert ms.case_id(want) == want.id == 8 and ms.case_name(8) == "{po,t}"
    assert ms.case_mask("{ph}", 1).tolist() == [[False, False, False, False, True]]
    assert ms.abbreviation_legend() == "t = text, a = audio, v = vision, po = pose, ph = physio"


def test_unknown_case_names_are_clear_errors():
    ms = ModalitySet(["text", "audio", "vision", "pose", "physio"])
    with pytest.raises(KeyError, match=r"unknown case '\{p\}'.*\['p'\] name no modality"):
        ms.case("{p}")  # ambiguous initial: neither pose nor physio
    with pytest.raises(KeyError, match="repeat"):
        ms.case("{t,text}")
    with pytest.raises(KeyError, match="looks like"):
        ms.case("{t")
    with pytest.raises(KeyError, match="out of range"):
        ms.case(31)
    with pytest.raises(TypeError, match="case key"):
        ms.case(True)


def test_a_hand_built_case_falls_back_to_initials_and_checks_its_abbreviations():
    assert MissingCase(2, ("text", "audio"), ("vision",)).name == "{a,t}"
    assert MissingCase(2, ("text", "pose"), (), ("t", "po")).name == "{po,t}"
    with pytest.raises(ValueError, match="one abbreviation per available modality"):
        MissingCase(2, ("text", "pose"), (), ("t",))
