"""Features read at a module: a :class:`~promptkit.hook_targets.FeatureModule` entry of a hook spec.

A backbone that reads a modality as BERT token ids, or as a ``(tensor, lengths)`` tuple, has its
feature sequence only at the output of its extractor module. This module reads that sequence out
of whatever the extractor returns (a tensor, a tuple/list by ``index``, a dict or ``ModelOutput``
by ``key``), writes a replacement back into the same container, zeroes a missing sample's rows of
the raw forward argument (so its content is never read), and zeroes a missing sample's rows of
the extractor's output during one call (:func:`zero_at_extractors`): the zero-fill control; or
sets them to a fill vector (:func:`fill_at_extractors`, MS/MD with training means, whose
:func:`extractor_means` are measured at the extractors).

Everything that calls a bare backbone on zero-filled inputs (the zero-fill baseline, MS, MD, LB)
goes through :func:`zero_filled_inputs` and :func:`zero_at_extractors`, so a string entry and a
module entry are zero-filled the same way, each at its own place.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .hook_targets import FeatureModule
from .hookspec import HookSpec, call_backbone, resolve_module

__all__ = [
    "batch_size_of",
    "check_feature_data",
    "extractor_means",
    "fill_at_extractors",
    "from_btd",
    "put_feature",
    "select_feature",
    "take_rows",
    "to_btd",
    "zero_at_extractors",
    "zero_filled_inputs",
    "zero_rows",
]


def _where(what: str, entry: FeatureModule) -> str:
    return f"feature module {entry.path!r} ({what})"


def select_feature(out: Any, entry: FeatureModule) -> torch.Tensor:
    """The feature sequence in an extractor's return value ``out``, in the entry's own layout.

    Raises:
        TypeError / KeyError / IndexError: ``out`` does not hold a tensor where ``index``/``key`` say.
    """
    if entry.key is not None:
        if isinstance(out, Mapping):
            if entry.key not in out:
                raise KeyError(f"feature module {entry.path!r}: key {entry.key!r} is not in its output; keys: {list(out)}")
            picked = out[entry.key]
        elif hasattr(out, entry.key):
            picked = getattr(out, entry.key)
        else:
            raise TypeError(f"feature module {entry.path!r} has key {entry.key!r}, but returned a {type(out).__name__}")
    elif entry.index is not None:
        items = list(out.values()) if isinstance(out, Mapping) else out
        if not isinstance(items, Sequence) or isinstance(items, (str, bytes, torch.Tensor)):
            raise TypeError(f"feature module {entry.path!r} has index {entry.index}, but returned a {type(out).__name__}")
        if not -len(items) <= entry.index < len(items):
            raise IndexError(f"feature module {entry.path!r}: index {entry.index} is out of range for its {len(items)} outputs")
        picked = items[entry.index]
    else:
        picked = out
    if not isinstance(picked, torch.Tensor):
        hint = " (an RNN's (output, h): index = 0; a BERT's output: key = \"last_hidden_state\")"
        raise TypeError(f"feature module {entry.path!r} returned a {type(out).__name__}, not a tensor where its entry "
                        f"points (index={entry.index}, key={entry.key}); set index= or key= to the sequence{hint}")
    return picked


def put_feature(out: Any, entry: FeatureModule, value: torch.Tensor) -> Any:
    """``out`` with the sequence :func:`select_feature` reads replaced by ``value`` (same container
    type: a tuple, a list, a named tuple, a dict or ``ModelOutput``; ``out`` itself is not changed)."""
    if entry.key is None and entry.index is None:
        return value
    if isinstance(out, Mapping):
        key = entry.key if entry.key is not None else list(out)[entry.index]
        new = copy.copy(out)
        new[key] = value
        return new
    if entry.key is not None:
        new = copy.copy(out)
        setattr(new, entry.key, value)
        return new
    items = list(out)
    items[entry.index] = value
    if isinstance(out, tuple):
        return type(out)(*items) if hasattr(out, "_fields") else tuple(items)
    return items


def to_btd(x: torch.Tensor, layout: str) -> torch.Tensor:
    """``x`` in ``layout`` (``BTD``, ``BDT``, ``TBD``) as ``(B, T, D)``."""
    return x.transpose(1, 2) if layout == "BDT" else x.transpose(0, 1) if layout == "TBD" else x


def from_btd(x: torch.Tensor, layout: str) -> torch.Tensor:
    """``(B, T, D)`` back into ``layout`` (the inverse of :func:`to_btd`)."""
    return to_btd(x, layout)  # each layout's swap is its own inverse


def batch_size_of(x: Any) -> int | None:
    """The rows of a raw input: a tensor's first axis, or that of a tuple/list's first tensor."""
    if isinstance(x, torch.Tensor):
        return int(x.shape[0]) if x.dim() else None
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor) and x[0].dim():
        return int(x[0].shape[0])
    return None


def zero_rows(x: Any, keep: torch.Tensor) -> Any:
    """A raw input with the rows where ``keep`` (``(B,)`` bool) is False set to zero, whatever its
    dtype (token ids become 0); of a tuple/list only the first element (the sequence) is zeroed,
    the others (lengths) are passed as given. A modality every sample has is returned as it is."""
    if bool(keep.all()):
        return x
    if isinstance(x, (tuple, list)):
        first = zero_rows(x[0], keep)
        return type(x)([first, *x[1:]]) if isinstance(x, list) else (first, *x[1:])
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"a module-entry input must be a tensor or a tuple/list whose first element is one, "
                        f"got {type(x).__name__}")
    rows = keep.to(x.device).reshape(-1, *([1] * (x.dim() - 1)))
    return torch.where(rows, x, torch.zeros((), dtype=x.dtype, device=x.device))


def take_rows(x: Any, rows: torch.Tensor) -> Any:
    """The samples ``rows`` of a raw input (a tensor, or each tensor of a tuple/list with that many rows)."""
    if isinstance(x, torch.Tensor):
        return x[rows]
    if isinstance(x, (tuple, list)):
        n = batch_size_of(x)
        parts = [p[rows] if isinstance(p, torch.Tensor) and p.dim() and p.shape[0] == n else p for p in x]
        return parts if isinstance(x, list) else tuple(parts)
    raise TypeError(f"cannot take rows of a {type(x).__name__}")


def zero_filled_inputs(
    spec: HookSpec | None, features: Mapping[str, Any], mask: torch.Tensor, modalities: Sequence[str]
) -> dict[str, Any]:
    """Every missing sample's input set to zero: a string entry's ``(B, T, D)`` features multiplied
    by the mask (as the zero-fill baseline always did), a module entry's raw input by :func:`zero_rows`.
    The module entries' extractor outputs are zeroed by :func:`zero_at_extractors`."""
    modules = {} if spec is None else spec.feature_modules
    out = {}
    for i, m in enumerate(modalities):
        x = features[m]
        out[m] = zero_rows(x, mask[:, i]) if m in modules else x * mask[:, i, None, None].to(x.dtype)
    return out


def _fill_missing(seq: torch.Tensor, keep: torch.Tensor, entry: FeatureModule, modality: str,
                  value: torch.Tensor | None) -> torch.Tensor:
    batch_axis = 1 if entry.layout == "TBD" else 0
    if seq.dim() != 3 or seq.shape[batch_axis] != keep.shape[0]:
        raise ValueError(
            f"{_where(modality, entry)} is declared {entry.layout} for a batch of {keep.shape[0]}, but its output "
            f"sequence has shape {tuple(seq.shape)}"
        )
    rows = keep.to(seq.device).reshape([-1 if a == batch_axis else 1 for a in range(3)])
    if value is None:
        return torch.where(rows, seq, torch.zeros((), dtype=seq.dtype, device=seq.device))
    width = seq.shape[1 if entry.layout == "BDT" else 2]
    if value.shape != (width,):
        raise ValueError(f"the fill of {modality} has shape {tuple(value.shape)}; {_where(modality, entry)} outputs "
                         f"width {width}")
    value = value.to(device=seq.device, dtype=seq.dtype)
    return torch.where(rows, seq, value[:, None] if entry.layout == "BDT" else value)


@contextlib.contextmanager
def fill_at_extractors(model: nn.Module, spec: HookSpec | None, mask: torch.Tensor,
                       values: Mapping[str, torch.Tensor] | None = None) -> Iterator[None]:
    """For the duration of the block, each module entry's extractor output has the rows of the
    samples that miss that modality set to ``values[m]`` (``(D_m,)``, on every step), zero where
    ``values`` has none (``mask``: ``(B, M)`` bool in ``spec`` order). A spec without module
    entries (or None) changes nothing."""
    if spec is None or not spec.feature_modules:
        yield
        return
    handles = []
    for m, entry in spec.feature_modules.items():
        keep = mask[:, spec.modalities.index(m)]
        if bool(keep.all()):
            continue
        value = None if values is None else values.get(m)

        def hook(module: nn.Module, args: tuple, out: Any, entry=entry, keep=keep, m=m, value=value) -> Any:
            return put_feature(out, entry, _fill_missing(select_feature(out, entry), keep, entry, m, value))

        handles.append(resolve_module(model, entry.path).register_forward_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def zero_at_extractors(model: nn.Module, spec: HookSpec | None, mask: torch.Tensor):
    """:func:`fill_at_extractors` with zeros: the zero-fill control at each module entry's extractor."""
    return fill_at_extractors(model, spec, mask)


@torch.no_grad()
def extractor_means(model: nn.Module, spec: HookSpec, features: Mapping[str, Any],
                    batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Each module entry's mean feature ``(D_m,)`` at its extractor's output: over the valid (not
    all-zero) steps of every sample of ``features`` (a split's complete inputs ``{m: (N, ...)}``),
    the bare ``model`` run in eval mode, batch by batch. float32 on the CPU; zeros for a modality
    without any valid step."""
    entries = spec.feature_modules
    totals: dict[str, torch.Tensor] = {}
    steps = dict.fromkeys(entries, 0)
    handles = []
    for m, entry in entries.items():
        def hook(module: nn.Module, args: tuple, out: Any, m=m, entry=entry) -> None:
            seq = to_btd(select_feature(out, entry), entry.layout).double()
            valid = seq.abs().amax(-1) > 0
            totals[m] = totals.get(m, seq.new_zeros(seq.shape[-1])) + seq[valid].sum(0)
            steps[m] += int(valid.sum())
        handles.append(resolve_module(model, entry.path).register_forward_hook(hook))
    n = batch_size_of(next(iter(features.values())))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, batch_size):
            rows = torch.arange(start, min(start + batch_size, n))
            chunk = {m: _to(take_rows(x, rows.to(_device(x))), device) for m, x in features.items()}
            call_backbone(model, chunk, spec)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {m: (totals[m] / max(steps[m], 1)).float().cpu() for m in entries}


def _device(x: Any) -> torch.device:
    return (x[0] if isinstance(x, (tuple, list)) else x).device


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, (tuple, list)):
        return type(x)(p.to(device) if isinstance(p, torch.Tensor) else p for p in x)
    return x.to(device)


def check_feature_data(data: Any, hooks: HookSpec | Mapping[str, Any] | None, what: str) -> None:
    """Refuse a method that reads every modality's raw ``(B, T, D)`` floats (MMIN, MCTN: they
    translate raw features) on data where one is no such thing: a token modality of the data
    (``data.token_modalities``), or one the hook spec ``hooks`` reads at a module while its data
    tensor is not floating (token ids). Features a module reads from floats (a GRU's input) pass.

    Raises:
        ValueError: naming the modality, the spec's entry when there is one, and why.
    """
    spec = hooks if isinstance(hooks, HookSpec) or hooks is None else HookSpec.from_dict(dict(hooks))
    modules = {} if spec is None else spec.feature_modules
    train = data.splits["train"]
    tokens = set(getattr(data, "token_modalities", ()) or ())
    for m in data.modalities:
        x = train.features[m]
        if m in tokens or not (isinstance(x, torch.Tensor) and torch.is_floating_point(x)):
            entry = f"; the hook spec reads its features at module {modules[m].path!r}" if m in modules else ""
            kind = "token ids" if m in tokens else f"a {getattr(x, 'dtype', type(x).__name__)} tensor"
            raise ValueError(
                f"{what} translates each modality's raw features (B, T, D), but the data's {m} is {kind} "
                f"{tuple(getattr(x, 'shape', ()))}{entry}: it does not apply to this data (it would translate ids); "
                "give it feature data for every modality, or leave it out of [prompt] methods"
            )
