"""What a prompter trains, counted: the prompt tensors, per-modality groups (for CGGM) and the
trainable share of the backbone (peft's ``print_trainable_parameters``).

A mixin of :class:`~promptkit.prompter.model.MissingModalityPrompter`.
"""

from __future__ import annotations

from torch import nn

from .type_prompt import MissingTypePrompts


class PromptCounts:
    """Counts and groups of a prompter's trainable tensors."""

    def prompt_parameters(self) -> dict[str, int]:
        """Parameter counts: the prompts themselves (P_G, P_MS/P_NMS, P_MT with M_m) and MMGM's networks."""
        count = lambda ps: sum(p.numel() for p in ps)
        mmgm_all = count(self.mmgm.parameters()) if self.mmgm is not None else 0
        generative = count(self.mmgm.generative_prompts.parameters()) if self.mmgm is not None else 0
        return {
            "generative": generative,
            "signal": count(self.signal_prompts.parameters()) if self.signal_prompts is not None else 0,
            "type": count(self.type_prompts.parameters()) if self.type_prompts is not None else 0,
            "mmgm_networks": mmgm_all - generative,
        }

    def modality_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Trainable prompt/MMGM parameters that belong to one modality (for CGGM)."""
        out: dict[str, list[nn.Parameter]] = {m: [] for m in self.modality_set.names}
        if self.mmgm is not None:
            for m, ps in self.mmgm.modality_parameters().items():
                out[m] += ps
        if self.signal_prompts is not None:
            for m in out:
                out[m] += [self.signal_prompts.real[m], self.signal_prompts.generated[m]]
        if isinstance(self.type_prompts, MissingTypePrompts):  # per-case tokens belong to no one modality
            for m, ps in self.type_prompts.modality_parameters().items():
                out[m] += ps
        return out

    def prompt_tensors(self) -> list[nn.Parameter]:
        """The prompts themselves (P_G, P_NMS/P_MS, P_MT and M_m), e.g. for their own learning rate."""
        out: list[nn.Parameter] = []
        if self.mmgm is not None:
            out += list(self.mmgm.generative_prompts.parameters())
        if self.signal_prompts is not None:
            out += list(self.signal_prompts.parameters())
        if self.type_prompts is not None:
            out += list(self.type_prompts.parameters())
        return out

    def _check_something_trains(self) -> None:
        """Raise when no tensor would train: every prompt type off and the spec's ``trainable`` empty
        (or naming only parameter-free modules), so an optimizer would get nothing."""
        if any(p.requires_grad for p in self.parameters()):
            return
        raise ValueError(
            f"nothing to train: every prompt type is off ({type(self.config).__name__} generative, signal and type "
            f"are false) and the hook spec's trainable = {list(self.spec.trainable)} names no backbone parameter; "
            "name the head's modules or parameters in trainable ([hooks] trainable = [\"head\"] in a recipe)"
        )

    def trainable_summary(self) -> dict[str, float]:
        backbone = sum(p.numel() for p in self.backbone.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        counts = self.prompt_parameters()
        prompts = counts["generative"] + counts["signal"] + counts["type"]
        return {
            "backbone_params": backbone,
            "prompt_params": prompts,
            "trainable_params": trainable,
            "prompt_share": prompts / backbone,
            "trainable_share": trainable / backbone,
        }

    def print_trainable_parameters(self) -> None:
        s = self.trainable_summary()
        print(
            f"trainable params: {s['trainable_params']:,} || backbone params: {s['backbone_params']:,} || "
            f"trainable%: {100 * s['trainable_share']:.2f} || prompts%: {100 * s['prompt_share']:.2f}"
        )
