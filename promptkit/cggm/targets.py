"""What CGGM reads and writes on a model, resolved from its ``HookSpec`` at construction.

- :func:`check_encoders`: every modality has a ``HookSpec.encoders`` entry (CGGM's requirement).
- :func:`find_head`: the fused head's final ``nn.Linear`` (its weight enters L_gm).
- :func:`encoder_width`: the width ``D_m`` of modality m's representation ``(B, D_m)``.
- :func:`modality_parameters`: the disjoint parameter sets θ_m whose gradients get ρ·B_m.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from ..hookspec import HookSpec, resolve_module, trainable_parameters
from .config import is_int

_WIDTH_ATTRS = ("width", "embed_dim", "d_model", "hidden_size", "out_channels", "out_features", "out_dim")


def check_encoders(spec: HookSpec, name: str) -> None:
    """Raise a ``ValueError`` naming backbone ``name`` unless every modality has an encoder (≥ 2 modalities)."""
    enc, modalities = spec.encoders, list(spec.modalities)
    hint = "(modality -> ModalityEncoder(output=path, layout=..., params=[paths])) for every modality"
    if not enc:
        raise ValueError(
            f"backbone {name}'s hook spec names no per-modality encoders; CGGM needs HookSpec.encoders "
            f"{hint} {modalities}"
        )
    lacking = [m for m in modalities if m not in enc]
    if lacking:
        raise ValueError(
            f"backbone {name}'s hook spec names no encoder for modality {lacking}; CGGM needs HookSpec.encoders "
            f"{hint} {modalities}"
        )
    if len(modalities) < 2:
        raise ValueError(f"CGGM balances modalities and needs at least two, got {modalities}")


def find_head(model: nn.Module, spec: HookSpec, head: str | None) -> tuple[str, nn.Linear]:
    """``(path, module)`` of the head's output layer: ``head`` if given, else the last ``nn.Linear``
    inside the modules of ``spec.trainable``.

    ``trainable`` may also name parameters (a head of bare ``nn.Parameter`` objects, like LMF's
    ``fusion_weights``). Then the prediction may come from those parameters rather than from any
    ``nn.Linear``, and L_gm would compare the classifiers with a layer that is not the output: without
    ``head`` that is an error naming the parameter entries (set ``head`` to the output layer).

    Raises:
        KeyError: ``head`` or a trainable entry names neither a module nor a parameter.
        TypeError: ``head`` is not an ``nn.Linear`` module (a parameter, or another module).
        ValueError: ``trainable`` names parameters, or its modules hold no ``nn.Linear``.
    """
    modules = dict(model.named_modules())
    if head is not None:
        if head not in modules and head in dict(model.named_parameters()):
            raise TypeError(f"CGGM head {head!r} is a parameter of {type(model).__name__}; head must name the "
                            "module path of the fused head's final nn.Linear")
        module = resolve_module(model, head)
        if not isinstance(module, nn.Linear):
            raise TypeError(f"CGGM head {head!r} must be an nn.Linear, got {type(module).__name__}")
        return head, module
    found: tuple[str, nn.Linear] | None = None
    parameters: list[str] = []
    for path in spec.trainable:
        if path not in modules:
            trainable_parameters(model, path)  # a parameter's name, else a KeyError naming the entry
            parameters.append(path)
            continue
        for sub, module in modules[path].named_modules():
            if isinstance(module, nn.Linear):
                found = (f"{path}.{sub}" if path and sub else path or sub, module)
    hint = "set head='module.path' of the fused head's final nn.Linear in the CGGM config ([cggm] head)"
    if parameters:
        last = f"the last nn.Linear in the others is {found[0]!r}" if found else "the others hold no nn.Linear"
        raise ValueError(
            f"CGGM needs the fused head's final nn.Linear, whose weight L_gm compares with the classifiers': "
            f"HookSpec.trainable entries {parameters} are parameters, not modules, so the output may not come from "
            f"an nn.Linear ({last}); {hint}"
        )
    if found is None:
        raise ValueError(
            f"CGGM needs the fused head's final nn.Linear: HookSpec.trainable {spec.trainable} holds none; {hint}"
        )
    return found


def encoder_width(model: nn.Module, spec: HookSpec, m: str) -> int:
    """``ModalityEncoder.width``, or read from the output module (a bidirectional RNN counts twice)."""
    enc = spec.encoders[m]
    if enc.width is not None:
        return int(enc.width)
    module = resolve_module(model, enc.output)
    for attr in _WIDTH_ATTRS:
        value = getattr(module, attr, None)
        if is_int(value):
            return value * (2 if attr == "hidden_size" and getattr(module, "bidirectional", False) else 1)
    raise ValueError(
        f"cannot infer the output width of {m}'s encoder {enc.output!r} ({type(module).__name__}); "
        f"give width= in its ModalityEncoder"
    )


def modality_parameters(
    model: nn.Module, spec: HookSpec, extra: Mapping[str, Iterable[nn.Parameter]] | None = None
) -> dict[str, list[nn.Parameter]]:
    """θ_m: the parameters of ``spec.encoders[m].params`` plus ``extra[m]``, each listed once.

    Raises:
        KeyError: ``extra`` names an unknown modality.
        ValueError: one parameter belongs to two modalities.
    """
    modalities = spec.modalities
    extra = dict(extra or {})
    unknown = sorted(set(extra) - set(modalities))
    if unknown:
        raise KeyError(f"extra_params names modality {unknown}; known: {list(modalities)}")
    owner: dict[int, str] = {}
    out: dict[str, list[nn.Parameter]] = {}
    for m in modalities:
        params = [p for path in spec.encoders[m].params for p in resolve_module(model, path).parameters()]
        params += list(extra.get(m, []))
        out[m] = []
        for p in params:
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"extra_params[{m!r}] holds a {type(p).__name__}, expected nn.Parameter")
            if owner.get(id(p), m) != m:
                raise ValueError(
                    f"a parameter {tuple(p.shape)} belongs to both {owner[id(p)]!r} and {m!r}; "
                    f"CGGM needs disjoint sets"
                )
            if id(p) not in owner:
                owner[id(p)] = m
                out[m].append(p)
    return out
