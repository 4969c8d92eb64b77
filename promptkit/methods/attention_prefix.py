"""Missing-aware key/value prefixes on a frozen backbone's attention modules (MPMM's attention level).

On the frozen pre-trained backbone, every attention module (the project's
:class:`backbones.layers.MultiheadAttention`, used by MulT, and :class:`torch.nn.MultiheadAttention`,
used by MISA's and MMIM's ``nn.TransformerEncoderLayer``) gets, per missing case, a learned key
prefix and a learned value prefix of ``L`` tokens (``L`` = the recipe's ``prompt_length``) of that
module's width ``E``. Each sample's case (which modalities it has, :meth:`ModalitySet.case_ids_from_masks`)
picks its set; the set is prepended to that attention call's key and value::

    key   (B, T_k, E) -> (B, L + T_k, E)     (time-first modules: (T_k, B, E) -> (L + T_k, B, E))
    value (B, T_k, E) -> (B, L + T_k, E)
    key_padding_mask (B, T_k) -> (B, L + T_k), False (visible) at the prefix
    attn_mask (..., T_q, T_k) -> (..., T_q, L + T_k), not blocked at the prefix

The query is unchanged, so every attention output keeps its shape ``(B, T_q, E)`` and the rest of
the backbone runs as before. The prefix enters *before* the module's own k/v input projection (it is
prepended to the module's key/value inputs, as a forward pre-hook), so one prefix token is a
token in the module's input space. A self-attention call (``key`` None) becomes a cross-attention
call of its input with the prefixed input; ``is_causal`` becomes the explicit causal mask with the
prefix columns visible.

Missing inputs are zero-filled (:func:`~promptkit.methods.substitution.substitute` with zeros),
as in the head-only control and ``mpmm``; the spec's trainable head trains with the prefixes; every
other backbone weight is frozen and stays bit-identical. Parameters:
``(2**M - 1) * n_attention * 2 * L * E`` (:func:`attention_prompt_parameters`) plus the head.

Departures from the paper: the paper prefixes the keys and values of every layer of a ViLT
transformer (one multimodal stream); here every attention module of the backbone outside its head
is prefixed, the crossmodal ones (MulT's ``cross[...]`` transformers, whose keys come from another
modality) included, each with its own sets. The prompts' random init is ``init_std`` Gaussian
(``[prompt.prompter] init_std``); ``init_scale = "data"`` is not applied. For a
:class:`torch.nn.MultiheadAttention` with ``kdim``/``vdim`` other than ``embed_dim`` the key and
value prefixes have those widths. Calls run with PyTorch's fused ``nn.TransformerEncoderLayer``
path off: recent PyTorch (2.14 here) already skips it for a layer with hooks, older releases bypass
the attention module's forward, and with it the prefixes.

The prefixes and the head are saved alone as an adapter directory of type ``"mpmm_attn"``
(:mod:`.attention_prefix_files`).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..hookspec import HookSpec, backbone_caller, hook_spec_for, spec_or_none
from ..modalities import ModalitySet
from .attention_prefix_files import read_attention_prompts, save_attention_prompts
from .substitution import substitute


def attention_prompt_parameters(num_modalities: int, length: int, embed_dims: Sequence[int]) -> int:
    """Prefix parameters: per case (``2**M - 1``), per attention module, a key and a value prefix
    of ``(L, E)``: ``(2**M - 1) * 2 * L * sum(embed_dims)``."""
    return (2**int(num_modalities) - 1) * 2 * int(length) * sum(int(e) for e in embed_dims)


def _attention_classes() -> tuple[type, ...]:
    classes: list[type] = [nn.MultiheadAttention]
    try:
        from backbones.layers import MultiheadAttention
    except ImportError:  # promptkit imports without the backbones package
        pass
    else:
        classes.append(MultiheadAttention)
    return tuple(classes)


def _inside(name: str, paths: Sequence[str]) -> bool:
    return any(p == "" or name == p or name.startswith(p + ".") for p in paths)


def attention_modules(backbone: nn.Module, head: Sequence[str] = ()) -> list[tuple[str, nn.Module]]:
    """``(path, module)`` of every attention module of ``backbone`` outside ``head``, in
    ``named_modules`` order (the project's ``MultiheadAttention`` and ``nn.MultiheadAttention``)."""
    classes = _attention_classes()
    return [(n, m) for n, m in backbone.named_modules() if isinstance(m, classes) and not _inside(n, head)]


def attention_widths(backbone: nn.Module, hooks: Any = None) -> list[int]:
    """The width ``E`` of every attention module :class:`AttentionPrefixPrompts` prefixes in
    ``backbone`` (outside the spec's trainable head; ``hooks`` for a backbone without a registered
    spec, none found: no head excluded), for :func:`attention_prompt_parameters`."""

    spec = spec_or_none(backbone, hooks)
    return [int(m.embed_dim) for _, m in attention_modules(backbone, list(spec.trainable) if spec else [])]


def _kv_widths(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.MultiheadAttention):
        return int(module.kdim), int(module.vdim)
    return int(module.embed_dim), int(module.embed_dim)


def _time_first(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) and not module.batch_first


def _pad_columns(mask: torch.Tensor, length: int, t_k: int) -> torch.Tensor:
    """``mask (..., T_k)`` with ``length`` unblocked columns in front (False for bool, 0 for float);
    a mask broadcast over the keys (last dim 1) is left as it is."""
    if mask.shape[-1] != t_k:
        return mask
    pad = mask.new_zeros((*mask.shape[:-1], length))  # False / 0.0: not blocked
    return torch.cat([pad, mask], dim=-1)


@contextlib.contextmanager
def _no_mha_fastpath() -> Iterator[None]:
    """PyTorch's fused ``nn.TransformerEncoderLayer`` path (eval, no grad) skips ``self_attn.forward``
    and its hooks in releases that do not check for hooks; turn it off for the call."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    was = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(was)


class AttentionPrefixPrompts(nn.Module):
    """A frozen backbone whose attention modules get per-case key/value prefixes.

    Args:
        backbone: the pre-trained backbone; frozen here except the spec's trainable head.
        hooks: a HookSpec (or dict) for a backbone without a registered one; its ``features`` give
            the modalities (the mask's column order) and its ``trainable`` the head.
        length: ``L``, prefix tokens per attention module and case.
        init_std: std of the prompts' random init (drawn from the global RNG; seed it outside).

    Attributes:
        key_prompts, value_prompts: one ``(2**M - 1, L, E)`` tensor per attention module, in
            :attr:`attention_names` order; row ``c`` is case ``c`` (:meth:`ModalitySet.case_ids_from_masks`).

    Call ``model(features {m: (B, T_m, D_m)}, mask (B, M) bool) -> (B, out_dim)``.

    Raises:
        ValueError: ``backbone`` has no attention module outside its head, or a bad ``length``.
    """

    def __init__(self, backbone: nn.Module, hooks: Any = None, *, length: int = 16, init_std: float = 0.02) -> None:
        super().__init__()

        if isinstance(length, bool) or int(length) != length or length < 1:
            raise ValueError(f"prompt length must be a positive int, got {length!r}")
        spec = hook_spec_for(backbone) if hooks is None else (
            hooks if isinstance(hooks, HookSpec) else HookSpec.from_dict(dict(hooks)))
        self.spec = spec
        self.head = list(spec.trainable)
        found = attention_modules(backbone, self.head)
        if not found:
            raise ValueError(
                f"{type(backbone).__name__} has no attention module (backbones.layers.MultiheadAttention or "
                f"torch.nn.MultiheadAttention) outside its head {self.head}: mpmm_attn needs attention layers "
                "to prefix; use \"mpmm\" (input-level prompts) for this backbone"
            )
        self.backbone = backbone
        self.modality_set = ModalitySet(list(spec.modalities))
        self.length = int(length)
        self.attention_names = [n for n, _ in found]
        cases = len(self.modality_set.cases)
        widths = [_kv_widths(m) for _, m in found]
        ref = next(backbone.parameters())
        self.key_prompts = nn.ParameterList(
            [nn.Parameter(torch.randn(cases, self.length, k) * init_std) for k, _ in widths])
        self.value_prompts = nn.ParameterList(
            [nn.Parameter(torch.randn(cases, self.length, v) * init_std) for _, v in widths])
        self.key_prompts.to(device=ref.device, dtype=ref.dtype)
        self.value_prompts.to(device=ref.device, dtype=ref.dtype)
        for name, p in backbone.named_parameters():
            p.requires_grad_(_inside(name, self.head))
        self._case_ids: torch.Tensor | None = None
        self._handles = [m.register_forward_pre_hook(self._hook(i, m), with_kwargs=True)
                         for i, (_, m) in enumerate(found)]

    # --- the prefixes -----------------------------------------------------------------------------
    def _hook(self, index: int, module: nn.Module):
        signature = inspect.signature(module.forward)
        time_first = _time_first(module)
        name = self.attention_names[index]

        def pre_hook(mod: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            ids = self._case_ids
            if ids is None:
                raise RuntimeError(
                    f"attention module {name!r} ran outside AttentionPrefixPrompts.forward: no missing case "
                    "is set for its prefixes; call the AttentionPrefixPrompts model with (features, mask)"
                )
            bound = signature.bind(*args, **kwargs)
            a = bound.arguments
            query = a["query"]
            key = a.get("key")
            value = a.get("value")
            if key is None:  # the project's self-attention: keys and values are the query
                if value is not None:
                    raise ValueError("value given without key; pass key (and value) for cross-attention")
                key = value = query
            elif value is None:
                value = key
            if key.dim() != 3:
                raise ValueError(f"attention module {name!r}: mpmm_attn needs batched 3-d keys, got {tuple(key.shape)}")
            t_q = query.shape[0] if time_first else query.shape[1]
            t_k = key.shape[0] if time_first else key.shape[1]
            pk = self.key_prompts[index][ids].to(dtype=key.dtype)  # (B, L, E_k)
            pv = self.value_prompts[index][ids].to(dtype=value.dtype)
            if time_first:
                key = torch.cat([pk.transpose(0, 1), key], dim=0)
                value = torch.cat([pv.transpose(0, 1), value], dim=0)
            else:
                key = torch.cat([pk, key], dim=1)
                value = torch.cat([pv, value], dim=1)
            a["key"], a["value"] = key, value
            attn_mask = a.get("attn_mask")
            if a.get("is_causal", False):
                if attn_mask is None:  # the causal mask, explicit: the prefix shifts the keys
                    attn_mask = torch.ones(t_q, t_k, dtype=torch.bool, device=key.device).triu(1)
                a["is_causal"] = False
            if attn_mask is not None:
                a["attn_mask"] = _pad_columns(attn_mask, self.length, t_k)
            kpm = a.get("key_padding_mask")
            if kpm is not None:
                a["key_padding_mask"] = _pad_columns(kpm, self.length, t_k)
            return bound.args, bound.kwargs

        return pre_hook

    # --- calls ------------------------------------------------------------------------------------
    def forward(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """``features {m: (B, T_m, D_m)}``, ``mask (B, M)`` bool → ``(B, out_dim)``: missing inputs
        zero-filled, each sample's case picking its prefixes in every attention module."""

        names = self.modality_set.names
        filled = substitute({m: features[m] for m in names}, mask, names, None)
        device = self.key_prompts[0].device
        self._case_ids = self.modality_set.case_ids_from_masks(mask.to(device))
        try:
            with _no_mha_fastpath():
                return backbone_caller(self.backbone, self.spec)(filled)
        finally:
            self._case_ids = None

    def prompt_tensors(self) -> list[nn.Parameter]:
        return [*self.key_prompts, *self.value_prompts]

    def head_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.backbone.named_parameters() if _inside(n, self.head)}

    def prompt_parameters(self) -> int:
        return sum(p.numel() for p in self.prompt_tensors())

    def embed_dims(self) -> list[int]:
        return [int(p.shape[-1]) for p in self.key_prompts]

    def remove(self) -> nn.Module:
        """Take the hooks off; returns the backbone (its head's requires_grad as left by training)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        return self.backbone

    # --- saving -----------------------------------------------------------------------------------
    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The prefixes (``key.<i>``, ``value.<i>``) and the head's state (``head.<backbone key>``),
        sharing storage with the model (an adapter's tensors are copied into them)."""
        out = {f"key.{i}": p.detach() for i, p in enumerate(self.key_prompts)}
        out.update({f"value.{i}": p.detach() for i, p in enumerate(self.value_prompts)})
        out.update({f"head.{k}": v for k, v in self.backbone.state_dict().items() if _inside(k, self.head)})
        return out

    def frozen_state(self) -> dict[str, torch.Tensor]:
        """The frozen backbone state (the head left out): what the adapter's ``backbone_weights`` covers."""
        return {k: v for k, v in self.backbone.state_dict().items() if not _inside(k, self.head)}

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write only the prefixes and the head to the adapter directory ``directory``; returns it
        (:func:`~promptkit.methods.attention_prefix_files.save_attention_prompts`)."""
        return save_attention_prompts(self, directory)

    @classmethod
    def from_pretrained(cls, backbone: nn.Module, path: str | Path, hooks: Any = None, *,
                        check_weights: bool = True) -> AttentionPrefixPrompts:
        """Hook the bare ``backbone`` and load the prefixes and head saved by :meth:`save_pretrained`
        (or the single file older promptkit wrote).

        Raises:
            AdapterLoadError: see :func:`~promptkit.methods.attention_prefix_files.read_attention_prompts`.
        """
        return read_attention_prompts(cls, backbone, path, hooks, check_weights=check_weights)
