"""Any modality set end to end: ``promptkit run`` on M = 4 and M = 5 synthetic recipes, in a subprocess.

M = 5 has two names sharing an initial (``pose``, ``physio``): case names built from initials would
collide there (``{p}`` twice) and results keyed by name would overwrite each other. Every case
(``2**M - 1`` of them) must appear exactly once in ``protocol.json`` and ``protocol.csv``, under a
distinct name that maps 1:1 to its stable case id.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from promptkit.modalities import ModalitySet

RECIPE = """
name = "tiny-any-m{m}"
description = "a tiny recipe over {m} modalities"
[backbone]
name = "mult"
[backbone.config]
d_model = 8
num_heads = 2
layers = 1
[data]
source = "synthetic"
seed = 3
sizes = {{ train = 32, valid = 16, test = 24 }}
[data.synthetic]
modalities = {modalities}
seq_lens = {seq_lens}
feature_dims = {feature_dims}
[pretrain]
epochs = 1
batch_size = 16
seed = 1
[prompt]
epochs = 1
batch_size = 16
seed = 2
methods = ["mplmm", "head_only"]
[prompt.prompter]
prompt_length = 2
[eval]
missing_rates = [0.5]
seed = 5
"""

SETS = {
    4: ("text", "audio", "vision", "pose"),
    5: ("text", "audio", "vision", "pose", "physio"),
}
DIMS = {"text": 12, "pose": 6, "physio": 5}  # smaller text features; the rest keep their defaults
METHODS = ("zero_filled", "mplmm", "head_only")


def _toml_list(names):
    return "[" + ", ".join(f'"{n}"' for n in names) + "]"


def _recipe(m: int) -> str:
    names = SETS[m]
    lens = "{ " + ", ".join(f"{n} = {3 + i % 2}" for i, n in enumerate(names)) + " }"
    dims = "{ " + ", ".join(f"{n} = {d}" for n, d in DIMS.items() if n in names) + " }"
    return RECIPE.format(m=m, modalities=_toml_list(names), seq_lens=lens, feature_dims=dims)


def _no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    dup = [k for k, c in Counter(keys).items() if c > 1]
    assert not dup, f"duplicate JSON keys {dup}"
    return dict(pairs)


@pytest.fixture(scope="module", params=sorted(SETS), ids=lambda m: f"M{m}")
def finished(request, tmp_path_factory):
    m = request.param
    root = tmp_path_factory.mktemp(f"any-m{m}")
    recipe = root / "tiny.toml"
    recipe.write_text(_recipe(m))
    out = root / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("PROMPTKIT_TRACEBACK", None)
    cmd = [sys.executable, "-m", "promptkit.cli", "run", "--recipe", str(recipe), "--out", str(out),
           "--device", "cpu", "--quiet"]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return m, out


def test_every_case_appears_once_under_a_distinct_name(finished):
    m, out = finished
    ms = ModalitySet(SETS[m])
    summary = json.loads((out / "protocol.json").read_text(), object_pairs_hook=_no_duplicate_keys)
    expected = {c.name for c in ms.incomplete_cases}
    assert len(expected) == 2**m - 2  # the names themselves are distinct
    for method in METHODS:
        cases = summary["results"][method]["cases"]
        assert set(cases) == {*expected, "avg", "complete"}, method
        assert len(cases) == 2**m - 2 + 2
        assert summary["results"][method]["modalities"] == list(SETS[m])
        # the names map 1:1 to the stable ids 0 .. 2**M - 2 (complete last)
        ids = sorted(ms.case_id(c) for c in cases if c != "avg")
        assert ids == list(range(2**m - 1)), method
    assert summary["case_ids"] == {**{c.name: c.id for c in ms.incomplete_cases}, "complete": 2**m - 2}
    for pair in ("mplmm_vs_zero_filled", "head_only_vs_zero_filled", "mplmm_vs_head_only"):
        assert {*expected, "avg", "complete"} <= set(summary["paired"][pair]), pair
    assert set(summary["ceiling"]) == {*expected, "complete"}
    if m == 5:  # two names share the initial p: shortest unique prefixes
        assert {"{po}", "{ph}", "{ph,po}", "{a,ph,po,t,v}"} <= {*expected, ms.complete_case.name}


def test_csv_has_one_row_per_model_case_and_metric(finished):
    m, out = finished
    rows = list(csv.reader(io.StringIO((out / "protocol.csv").read_text())))
    assert rows[0] == ["model", "protocol", "setting", "metric", "value"]
    counts = Counter((r[0], r[2], r[3]) for r in rows[1:] if r[1] == "case")
    assert counts and set(counts.values()) == {1}
    per_model = Counter(model for model, _, metric in counts if metric == "non0_acc2")
    assert per_model == {method: 2**m - 2 + 2 for method in METHODS}
