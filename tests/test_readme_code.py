"""The README's code works as written: every ```python block runs (in a temporary directory), and
every ``promptkit ...`` command it shows names a sub-command and options the CLI's parser has.

A python block is left out only with a visible reason on the line before its fence,
``<!-- not run: needs a GPU -->``; the count of blocks that ran is checked, so deleting them all
fails. Commands in ```bash blocks, and concrete ones in plain ``` blocks, are parsed in full by
:func:`promptkit.cli.build_parser` (nothing runs); the synopsis and inline ``promptkit ...`` spans
have their sub-commands and option names checked (their values are placeholders). A ``--recipe``
that names a file or a shipped recipe must exist.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from promptkit.cli import build_parser
from promptkit.recipes import resolve_recipe_path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP = re.compile(r"^<!--\s*not run:(.*)-->\s*$")
FENCE = re.compile(r"^```(\w*)\s*$")
SEPARATORS = re.compile(r"\s(?:&&|\|\||;)\s|\s\|\s(?=\S*promptkit\b)")  # a pipe only before another promptkit


@dataclass
class Block:
    """A fenced code block: its language (``""`` for a plain fence), the README line of its first
    code line, its code, and the reason it is not run (None: it runs)."""

    lang: str
    line: int
    code: str
    skip: str | None = None


def code_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` in order; a ``<!-- not run: reason -->`` line just before a
    fence (blank lines between allowed) marks it skipped.

    Raises:
        ValueError: a skip marker without a reason, or a fence that is never closed.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        prev = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = SKIP.match(prev.strip())
        if marker and not marker.group(1).strip():
            raise ValueError(f"line {i}: '<!-- not run: -->' needs a reason")
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise ValueError(f"line {i + 1}: a ``` fence that is never closed")
        blocks.append(Block(m.group(1), i + 2, "\n".join(lines[i + 1:end]) + "\n",
                            marker.group(1).strip() if marker else None))
        i = end + 1
    return blocks


def run_block(block: Block, path: Path = README) -> None:
    """Execute a python block in a fresh namespace; tracebacks show the README's own line numbers."""
    code = compile("\n" * (block.line - 1) + block.code, str(path), "exec")
    exec(code, {"__name__": "__readme__"})


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def commands(text: str) -> list[list[str]]:
    """The ``promptkit`` command lines of shell text, as argument lists after the program: those run
    as ``promptkit``, ``.venv/bin/promptkit`` or ``-m promptkit.cli`` (torchrun, accelerate, python)."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        for part in SEPARATORS.split(line.split(" #")[0]):
            if not re.search(r"(?:^|[\s/])promptkit(?:\s|$)|-m promptkit\.cli\b", part):
                continue  # prose and paths (a layout tree's "promptkit/") are no commands
            tokens = shlex.split(part)
            for k, tok in enumerate(tokens):
                if tok == "promptkit" or tok.endswith("/promptkit"):
                    found.append(tokens[k + 1:])
                    break
                if tok == "-m" and tokens[k + 1:k + 2] == ["promptkit.cli"]:
                    found.append(tokens[k + 2:])
                    break
    return found


def check_names(argv: list[str], where: str) -> argparse.ArgumentParser:
    """The sub-command path of ``argv`` exists and each ``--option`` in it belongs to that sub-command;
    returns its parser. Values may be placeholders (``R``, ``[--data PATH]``)."""
    parser = build_parser()
    words = [t for t in argv if not t.startswith(("-", "["))]
    path = []
    sub = _subparsers(parser)
    while sub is not None:
        if not words or words[0] not in sub.choices:
            raise AssertionError(f"{where}: 'promptkit {' '.join(argv)}' names sub-command "
                                 f"{' '.join([*path, *words[:1]])!r}; the CLI has {sorted(sub.choices)}")
        path.append(words.pop(0))
        parser = sub.choices[path[-1]]
        sub = _subparsers(parser)
    known = {s for a in parser._actions for s in a.option_strings}
    for option in re.findall(r"(?<![\w-])--[A-Za-z][\w-]*", " ".join(argv)):
        assert option in known, f"{where}: 'promptkit {' '.join(argv)}': {option} is not an option of " \
                                f"'promptkit {' '.join(path)}' ({sorted(known)})"
    recipe = argv[argv.index("--recipe") + 1] if "--recipe" in argv[:-1] else None
    if recipe is not None and (recipe.endswith(".toml") or re.fullmatch(r"[a-z][a-z0-9-]+", recipe)):
        assert (ROOT / recipe).is_file() or resolve_recipe_path(recipe).is_file(), f"{where}: no recipe {recipe}"
    return parser


def check_parses(argv: list[str], where: str) -> None:
    """:func:`check_names`, then the whole command through the CLI's parser (not run)."""
    check_names(argv, where)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as e:
            raise AssertionError(f"{where}: 'promptkit {' '.join(argv)}' does not parse: {err.getvalue()}") from e
    assert callable(getattr(args, "func", None)), f"{where}: 'promptkit {' '.join(argv)}' selects no command"


BLOCKS = code_blocks(README.read_text(encoding="utf-8"))
PYTHON = [b for b in BLOCKS if b.lang == "python"]


@pytest.mark.parametrize("block", PYTHON, ids=lambda b: f"README.md:{b.line}")
def test_a_python_block_of_the_readme_runs(block, tmp_path, monkeypatch):
    if block.skip:
        pytest.skip(f"README.md:{block.line} is marked not run: {block.skip}")
    monkeypatch.chdir(tmp_path)  # what a block writes (adapter/, runs/) lands here
    run_block(block)


def test_the_readme_has_python_blocks_that_run():
    """Deleting the blocks (or marking them all not run) would leave nothing tested."""
    ran = [b for b in PYTHON if b.skip is None]
    assert len(ran) >= 2, f"only {len(ran)} python block(s) of README.md run: {[b.line for b in PYTHON]}"


def test_every_promptkit_command_in_a_bash_block_parses():
    shown = [(b.line, argv) for b in BLOCKS if b.lang in ("bash", "sh", "shell") for argv in commands(b.code)]
    assert len(shown) >= 2, shown  # the quick start, the distributed launches
    for line, argv in shown:
        check_parses(argv, f"README.md block at line {line}")


def test_the_synopsis_and_inline_commands_name_real_subcommands_and_options():
    text = README.read_text(encoding="utf-8")
    plain = [(b.line, argv) for b in BLOCKS if b.lang == "" for argv in commands(b.code)]
    assert len(plain) >= 7, plain  # the command-line synopsis, the sweep example
    inline = [(text[:m.start()].count("\n") + 1, shlex.split(m.group(1))[1:])
              for m in re.finditer(r"`(promptkit [a-z][^`\n]*)`", text)]
    assert len(inline) >= 5, inline
    for line, argv in plain + inline:
        check_names(argv, f"README.md:{line}")
    for line, argv in plain:  # a concrete example (no [optional] parts) parses as a whole
        if not any(t.startswith("[") for t in argv):
            check_parses(argv, f"README.md block at line {line}")


# --- the checks themselves ------------------------------------------------------------------------
def test_a_marked_block_is_skipped_with_its_reason_and_a_marker_needs_one():
    text = "x\n<!-- not run: needs a GPU -->\n\n```python\nraise SystemExit\n```\n```python\nok = 1\n```\n"
    skipped, kept = code_blocks(text)
    assert (skipped.skip, skipped.line, kept.skip, kept.code) == ("needs a GPU", 5, None, "ok = 1\n")
    with pytest.raises(ValueError, match="needs a reason"):
        code_blocks("<!-- not run: -->\n```python\npass\n```\n")


def test_a_block_whose_import_moved_fails_at_its_readme_line():
    block = code_blocks("text\n\n```python\nimport torch\nfrom promptkit.train.protocol import evaluate\n```\n")[0]
    with pytest.raises(ModuleNotFoundError, match="promptkit.train.protocol") as info:
        run_block(block)
    assert info.traceback[-1].lineno + 1 == 5  # README line of the import (pytest counts from 0)


@pytest.mark.parametrize("argv, message", [
    (["trian", "--recipe", "mult-synth"], r"names sub-command 'trian'"),
    (["run", "--recipe", "mult-synth", "--epochs", "2"], r"--epochs is not an option of 'promptkit run'"),
    (["data", "--recipe", "mult-synth"], r"names sub-command 'data mult-synth'; the CLI has \['describe'\]"),
    (["run", "--recipe", "recipes/no-such.toml"], r"no recipe recipes/no-such.toml|not found"),
])
def test_a_stale_command_is_caught(argv, message):
    with pytest.raises(Exception, match=message):
        check_parses(argv, "here")


def test_commands_are_found_behind_launchers_and_separators():
    text = ("python3 -m venv .venv && .venv/bin/promptkit run --recipe R  # comment\n"
            "torchrun --nproc_per_node 2 -m promptkit.cli train --recipe R\npromptkit recipes list | promptkit "
            "backbones list\n")
    assert commands(text) == [["run", "--recipe", "R"], ["train", "--recipe", "R"], ["recipes", "list"],
                              ["backbones", "list"]]
