"""CGGM: classifier-guided gradient modulation (Guo et al., NeurIPS 2024) as a training plug-in.

Per modality m a small classifier f_m reads the *detached* output of that modality's encoder
(``HookSpec.encoders[m]``) and trains with its own Adam on the task loss. Each training step::

    ε_m(t) = batch accuracy of f_m (its predictions before this step's update)
    Δ_m    = ε_m(t) − ε_m(t−1),      S = Σ_j Δ_j
    B_m    = (S − Δ_m) / S                      a modality that improves faster is slowed down
    grad θ_m ← ρ·B_m · grad θ_m                 after backward, before clipping and the step
    L_gm   = (Σ_m |B_m| − Σ_m B_m·cos_m) / M,   loss += λ·L_gm  (B_m constants)

cos_m is the cosine similarity between f_m's output-layer weight and the fused head's output-layer
weight (the released code's stand-in for the two gradient directions). θ_m are the parameters of
the modules in ``encoders[m].params`` (only those with ``requires_grad``) plus, in the prompt
stage, ``extra_params[m]`` (the prompter's per-modality prompts and MMGM parameters).

Where this differs from the authors' code (github zrguo/CGGM), on purpose:

- **S ≈ 0 guard.** The released code divides by ``S + 1e-8``: when the accuracies do not move
  (S = 0 happens all the time, batch accuracies are multiples of 1/n) B is ±1e6 or more. Here
  ``|S| < eps`` gives B_m = 1 for every modality for that step (no modality is preferred), as
  does the first step (no ε(t−1) yet; the released code starts from ε = 0, so its first Δ is
  the whole accuracy) and the optional ``warmup_steps``.
- **Bound.** B is clipped to ``[0, b_max]``. A negative factor would turn the descent step of a
  modality's encoder into an ascent step (un-learning), and would flip the sign of that
  modality's term in L_gm (rewarding misalignment); the method's intent is to slow a dominant
  modality, so the floor is 0 (it pauses for the step). ``b_max`` caps the gain at ρ·b_max when
  S is small but above eps. With B in [0, b_max], L_gm = Σ B_m (1 − cos_m) / M ≥ 0.
- **Timing.** L_gm uses this step's B and weights; the released code adds the previous step's.
- **Accuracy.** Regression: sign accuracy on non-zero labels (the released code's
  ``exclude_zero`` flag is a no-op, zeros count as negatives). Classification: argmax accuracy;
  ``(B, K)`` labels with ``(B, K·C)`` logits are K tasks of C classes (IEMOCAP: K=4, C=2).
- **Missing modalities.** With a batch ``"mask"`` (B, M) (columns in spec order), f_m trains and
  is scored only on samples where m is present; a modality with nothing to score keeps Δ_m = 0.
- **Distributed.** Hit counts and classifier gradients are summed across processes, so every
  process computes the same B and keeps the same classifiers.
- **Widths.** The classifier's hidden width defaults to the head's input width, so the two
  output-layer weights have the same shape (in the released code both are the model width,
  40 on MOSI). Weights of different shapes have no cosine; an explicit ``classifier_hidden``
  that differs from the head's input width is an error when ``lam > 0``.

Modules: :mod:`.config` (``CGGMConfig``), :mod:`.coefficients` (the pure functions of one step),
:mod:`.history` (``CGGMHistory``), :mod:`.targets` (encoders, head, widths and parameter sets
read from the ``HookSpec``), :mod:`.classifiers` (the f_m: built, moved, trained, synced),
:mod:`.plugin` (the ``CGGM`` plug-in).
"""

from __future__ import annotations

from .coefficients import (
    direction_loss,
    modulation_coefficients,
    read_out,
    unimodal_stats,
)
from .config import CGGMConfig
from .history import CGGMHistory
from .plugin import CGGM

__all__ = [
    "CGGM",
    "CGGMConfig",
    "CGGMHistory",
    "direction_loss",
    "modulation_coefficients",
    "read_out",
    "unimodal_stats",
]
