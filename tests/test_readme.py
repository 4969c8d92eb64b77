"""The README's measured figures are generated from the committed JSON, so they cannot drift."""

from __future__ import annotations

import pytest

from benchmarks import readme


@pytest.mark.parametrize("doc", readme.DOCUMENTS, ids=lambda p: p.name)
def test_documents_tables_match_the_committed_results(doc):
    text = doc.read_text(encoding="utf-8")
    assert "<!-- BEGIN generated:" in text
    assert readme.render(text) == text, f"{doc} is stale: run python -m benchmarks.readme"


def test_every_generator_has_a_block_in_some_document():
    """A generator whose block was dropped from every document would silently stop being shown."""
    text = "".join(d.read_text(encoding="utf-8") for d in readme.DOCUMENTS)
    missing = [name for name in readme.SECTIONS if f"<!-- BEGIN generated:{name} -->" not in text]
    assert not missing, f"generated blocks shown nowhere: {missing}"


def test_a_block_without_a_generator_is_an_error():
    import pytest

    with pytest.raises(KeyError, match="no generator"):
        readme.render("<!-- BEGIN generated:nope -->\nx\n<!-- END generated:nope -->")


def test_render_rewrites_a_stale_block_from_the_json():
    stale = "<!-- BEGIN generated:table2 -->\nold numbers\n<!-- END generated:table2 -->"
    assert "old numbers" not in readme.render(stale)


def test_the_ordering_is_judged_on_differences_paired_by_seed():
    """A method ahead on every seed holds even when the seeds' spread overlaps; one behind by
    more than 2 SE is reversed; an unresolved one says so; LB is judged for equality."""
    def method(per_seed):
        return {"cases": {"avg": {"acc": {"per_seed": per_seed}}}}

    summary = {
        "mplmm": method([70.0, 74.0, 72.0]), "mmin": method([69.0, 73.0, 71.2]),  # +1 every seed: holds
        "mpmm": method([75.0, 77.0, 76.0]),                                         # MMIN far behind: reversed
        "md_zero": method([76.0, 75.5, 76.5]),                                      # 0 ± 0.8: not resolved
        "zero_filled": method([70.0, 71.0, 72.0]), "lb": method([70.1, 70.9, 72.0]),
    }
    rows = readme.table1_ordering({"backbones": {"mult": summary}}).splitlines()[2:]
    verdicts = {r.split("|")[1].strip(): r.split("|")[3].strip() for r in rows}
    assert verdicts["mplmm > mmin"] == "holds"
    assert verdicts["mmin > mpmm"] == "reversed"
    assert verdicts["mpmm > md_zero"].startswith("not resolved")
    assert verdicts["zero_filled ≈ lb"].startswith("holds")
