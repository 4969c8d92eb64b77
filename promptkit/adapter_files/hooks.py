"""The hook spec an adapter is built on: the saved one, or the caller's where it equals the saved one."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..hookspec import HookSpec
from .adapter_type import AdapterLoadError
from .config import canonical, config_differences, first_differences


def resolve_hook_spec(cfg_path: Path, saved: Mapping[str, Any], hooks: HookSpec | Mapping[str, Any] | None) -> HookSpec:
    """The spec to build on: the saved one, or the caller's ``hooks`` where it equals the saved one
    (its ``output`` may be a function where the file records that one was used). Nothing named in
    ``saved`` is imported.

    Raises:
        AdapterLoadError: the saved spec records an output function and ``hooks`` is None; ``hooks``
            differs from the saved spec, or gives no function where one is needed.
    """
    try:
        spec = HookSpec.from_dict(dict(saved))
        given = None if hooks is None else hooks if isinstance(hooks, HookSpec) else HookSpec.from_dict(dict(hooks))
    except (KeyError, TypeError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        where = f"{cfg_path}: 'hook_spec'" if hooks is None else "hooks="
        raise AdapterLoadError(f"{where} is not a valid hook spec: {msg}") from None
    usage = (f"from_pretrained(backbone, {str(cfg_path.parent)!r}, hooks=spec), spec being the hook spec it was "
             "saved with and its 'output' the function")
    if given is None:
        if spec.needs_output_function:
            name = spec.output.call or "a lambda or a local function"
            raise AdapterLoadError(
                f"{cfg_path}: key 'hook_spec.output' is {spec.output.to_dict()}: the adapter was saved with an output "
                f"function ({name}), which an adapter does not hold and loading does not import; pass it back: {usage}"
            )
        return spec
    if given.needs_output_function:
        raise AdapterLoadError(
            f"hooks= passed to load {cfg_path.parent} has 'output' {given.output.to_dict()}, the record of a function, "
            "not the function; pass the function itself"
        )
    want = json.loads(canonical(saved))
    got = json.loads(canonical(given.to_dict()))
    if callable(given.output) and isinstance(want.get("output"), dict):
        got["output"] = want["output"]  # the saved name is provenance: the function is the caller's
    diffs = config_differences(got, want, "hook_spec")
    if diffs:
        raise AdapterLoadError(
            f"hooks= differs from the hook spec {cfg_path} was saved with: {first_differences(diffs)} (the "
            "prompts belong to the hook points they were trained on)"
        )
    return given
