"""The prompter's forward hooks: missing-signal prompts added to each projected sequence, and
missing-type tokens prepended to each encoder's input and trimmed from its output.

A mixin of :class:`~promptkit.prompter.model.MissingModalityPrompter`: the hooks read the batch's
mask and type tokens from the prompter (set for the duration of one forward), so two prompters can
live in one process.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..hookspec import SignalTarget, TypeTarget, resolve_module


class PromptHooks:
    """Attaches and implements the signal and type hooks of a prompter (see the module docstring)."""

    def _attach_hooks(self) -> None:
        if self.config.signal:
            for name, target in self.spec.signal.items():
                module = resolve_module(self.backbone, target.path)
                self._handles.append(module.register_forward_hook(self._signal_hook(name, target)))
        if self.config.type:
            for j, target in enumerate(self.spec.type):
                module = resolve_module(self.backbone, target.path)
                self._handles.append(
                    module.register_forward_pre_hook(self._type_pre_hook(j, target), with_kwargs=True)
                )
                if not target.keep:
                    self._handles.append(module.register_forward_hook(self._type_post_hook(target)))

    def _active(self) -> bool:
        return self._enabled and self._mask is not None

    def _signal_hook(self, modality: str, target: SignalTarget):
        col = self.modality_set.index(modality)
        width = self.signal_widths[modality]

        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            if not self._active():
                return None
            seq = output[0] if isinstance(output, tuple) else output  # an RNN's (output, state)
            feat_axis = 1 if target.layout == "BDT" else -1
            batch_axis = 1 if target.layout == "TBD" else 0
            if seq.dim() != (2 if target.layout == "BD" else 3) or seq.shape[feat_axis] != width \
                    or seq.shape[batch_axis] != self._mask.shape[0]:
                raise ValueError(
                    f"signal target {target.path!r} ({modality}) is declared {target.layout} with width {width} for a "
                    f"batch of {self._mask.shape[0]}, but its output has shape {tuple(seq.shape)}"
                )
            seq = self.signal_prompts.add_to(modality, seq, ~self._mask[:, col], target.layout)
            return (seq, *output[1:]) if isinstance(output, tuple) else seq

        return hook

    def _type_pre_hook(self, j: int, target: TypeTarget):
        width = self.type_widths[j]

        def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            if not self._active():
                return None
            args, kwargs = list(args), dict(kwargs)
            in_kwargs = isinstance(target.arg, str)
            seq = kwargs[target.arg] if in_kwargs else args[target.arg]
            batch_axis = 1 if target.layout == "TBD" else 0
            if seq.dim() != 3 or seq.shape[-1] != width or seq.shape[batch_axis] != self._mask.shape[0]:
                raise ValueError(
                    f"type target {target.path!r} is declared {target.layout} with tokens of width {width} for a batch "
                    f"of {self._mask.shape[0]}, but its sequence argument has shape {tuple(seq.shape)}"
                )
            tokens = self._type_tokens[j].to(seq.dtype)  # (B, l_p, d)
            if target.layout == "TBD":
                seq = torch.cat([tokens.transpose(0, 1), seq], dim=0)
            else:
                seq = torch.cat([tokens, seq], dim=1)
            if in_kwargs:
                kwargs[target.arg] = seq
            else:
                args[target.arg] = seq
            if self._type_prefix:  # the tokens get no position; the real steps keep theirs
                kwargs[target.prefix_len_arg] = (kwargs.get(target.prefix_len_arg) or 0) + tokens.shape[1]
            pad = target.padding_mask_arg
            if pad is not None and kwargs.get(pad) is not None:
                keep = torch.zeros(tokens.shape[0], tokens.shape[1], dtype=kwargs[pad].dtype, device=seq.device)
                kwargs[pad] = torch.cat([keep, kwargs[pad]], dim=1)
            return tuple(args), kwargs

        return hook

    def _type_post_hook(self, target: TypeTarget):
        length = self.config.prompt_length

        def trim(x: torch.Tensor) -> torch.Tensor:
            return x[length:] if target.layout == "TBD" else x[:, length:]

        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            # a module whose output never holds the token rows (returns_prompt_rows = False, e.g. an
            # encoder that returns only its last step) is left as it is
            if not self._active() or not getattr(module, "returns_prompt_rows", True):
                return None
            if isinstance(output, tuple):
                return (trim(output[0]), *output[1:])
            return trim(output)

        return hook
