"""Markdown pieces the generated result blocks share: a ``mean ± SE`` cell and a table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def _pm(s: dict[str, Any], digits: int = 1, sign: bool = False) -> str:
    mean, se = s["mean"], s["se"]
    m = f"{mean:+.{digits}f}" if sign else f"{mean:.{digits}f}"
    return m if se is None or (isinstance(se, float) and math.isnan(se)) else f"{m} ± {se:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
