"""The README's measured figures are generated from the committed JSON, so they cannot drift."""

from __future__ import annotations

from benchmarks import readme


def test_readme_tables_match_the_committed_results():
    text = readme.README.read_text(encoding="utf-8")
    assert "<!-- BEGIN generated:" in text
    assert readme.render(text) == text, "README.md is stale: run python -m benchmarks.readme"


def test_a_block_without_a_generator_is_an_error():
    import pytest

    with pytest.raises(KeyError, match="no generator"):
        readme.render("<!-- BEGIN generated:nope -->\nx\n<!-- END generated:nope -->")


def test_render_rewrites_a_stale_block_from_the_json():
    stale = "<!-- BEGIN generated:table2 -->\nold numbers\n<!-- END generated:table2 -->"
    assert "old numbers" not in readme.render(stale)
