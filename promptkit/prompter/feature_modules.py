"""MMGM at module entries: features read at an extractor's output, the generated ones put back there.

A mixin of :class:`~promptkit.prompter.model.MissingModalityPrompter` for hook specs whose
``features`` name a module (:class:`~promptkit.hook_targets.FeatureModule`). MMGM needs every
modality's features at once, but the backbone calls its extractors itself, in its own order and
with its own arguments (a BERT gets ``input_ids=``, ``attention_mask=``), so promptkit cannot call
them on its own. What it does instead, per prompted forward with a missing modality:

1. **capture**: the backbone's forward runs, with the missing samples' raw inputs zeroed and the
   prompt hooks inactive, until every extractor of a module entry has run; a forward hook records
   each one's output and the pass stops right after the last one (nothing downstream of the
   extractors runs);
2. MMGM completes those features (and the string entries' inputs) from the available modalities;
3. **substitute**: the backbone's forward runs again with the prompt hooks active, and each such
   extractor's ``forward`` is replaced for this call by one that returns the completed output (in
   its own container: the RNN's ``(output, h)``, the ``ModelOutput``), so no extractor runs twice;
   what runs before the extractors (an embedding) runs twice.

A complete batch needs neither: it is one plain forward. The zero-fill control zeroes the missing
rows at the extractor (:func:`promptkit.feature_points.zero_at_extractors`). The gradient reaches
MMGM through the substituted output, and a trainable extractor through the captured one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..feature_points import from_btd, put_feature, select_feature, to_btd
from ..hookspec import resolve_module


class _Captured(BaseException):
    """Stops the capture pass once every extractor has run (a BaseException: a backbone's own
    ``except Exception`` does not swallow it)."""


class ModuleFeatures:
    """Capture and substitution of the features of module entries (see the module docstring)."""

    def _capture_features(self, kwargs: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Run the backbone on ``kwargs`` until every module entry's extractor has run.

        Returns:
            modality → its sequence ``(B, T, D)`` and modality → the extractor's whole return value.
        """
        entries = self.spec.feature_modules
        seqs: dict[str, torch.Tensor] = {}
        outs: dict[str, Any] = {}
        handles = []
        for m, entry in entries.items():
            def hook(module: nn.Module, args: tuple, out: Any, m=m, entry=entry) -> None:
                if m in outs:
                    return
                outs[m], seqs[m] = out, to_btd(select_feature(out, entry), entry.layout)
                if len(outs) == len(entries):
                    raise _Captured
            handles.append(resolve_module(self.backbone, entry.path).register_forward_hook(hook))
        try:
            self.backbone(**kwargs)
        except _Captured:
            pass
        finally:
            for h in handles:
                h.remove()
        lacking = [m for m in entries if m not in outs]
        if lacking:
            raise RuntimeError(
                f"feature module(s) {[entries[m].path for m in lacking]} ({lacking}) did not run in a forward of "
                f"{type(self.backbone).__name__}; point the spec's features at the module that extracts them"
            )
        return seqs, outs

    def _call_with_features(self, kwargs: dict[str, Any], completed: dict[str, torch.Tensor],
                            outs: dict[str, Any]) -> Any:
        """One backbone forward in which each module entry's extractor returns its completed
        sequence ``completed[m]`` ``(B, T, D)`` (in the container ``outs[m]`` it returned) without running."""
        patched: list[tuple[nn.Module, Any]] = []
        try:
            for m, entry in self.spec.feature_modules.items():
                module = resolve_module(self.backbone, entry.path)
                value = put_feature(outs[m], entry, from_btd(completed[m], entry.layout))
                patched.append((module, module.__dict__.get("forward")))
                module.forward = lambda *args, _value=value, **kw: _value
            return self.backbone(**kwargs)
        finally:
            for module, own in patched:
                del module.forward
                if own is not None:
                    module.forward = own

    def _module_features(self, kwargs: dict[str, Any], mask: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict]:
        """The module entries' features of a batch, missing rows zero: the capture pass (step 1)."""
        seqs, outs = self._capture_features(kwargs)
        names = self.modality_set.names
        for m in seqs:
            keep = mask[:, names.index(m), None, None].to(seqs[m].device)
            seqs[m] = torch.where(keep, seqs[m], torch.zeros((), dtype=seqs[m].dtype, device=seqs[m].device))
        return seqs, outs

    def _generate(self, raw: dict[str, Any], features: dict[str, Any], mask: torch.Tensor) -> tuple[dict, Any]:
        """MMGM's completion: the string entries' features, and for module entries (when a sample
        misses something) ``(completed sequences, extractor outputs)`` for :meth:`_call_with_features`."""
        modules = self.spec.feature_modules
        recon = self.training and self.config.reconstruction_weight > 0
        if not modules or bool(mask.all()):
            generated = self.mmgm(features, mask)
            if recon:
                self._aux_loss = self.config.reconstruction_weight * self._reconstruction_loss(raw, generated, mask)
            return generated, None
        seqs, outs = self._module_features(self.spec.kwargs(features), mask)
        generated = self.mmgm({**features, **seqs}, mask)
        if recon:  # the dropped modules' real features: their extractors on the inputs as given
            with torch.no_grad():
                real, _ = self._capture_features(self.spec.kwargs(raw))
            self._aux_loss = self.config.reconstruction_weight * self._reconstruction_loss(
                {**raw, **real}, generated, mask)
        return {m: features[m] if m in modules else generated[m] for m in features}, (
            {m: generated[m] for m in modules}, outs)
