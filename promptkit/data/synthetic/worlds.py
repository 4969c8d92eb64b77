"""Worlds: one generator, the paper's four data sets (``world = "mosei" | "mosi" | "iemocap" | "sims"``).

All four share the latent structure of :mod:`.latents` (a verbal and a non-verbal sentiment
factor, four shared factors of which ``z[2]`` plays arousal), so a backbone pre-trained on the
MOSEI-like source learns functions of the same factors every target is made of; the targets
differ in their feature extractors (feature sizes and mixings), their sizes and their labels.

- ``"mosei"``: the source domain (``domain="source"``, CMU-MOSEI's 16326 / 1871 / 4659 split).
- ``"mosi"``: the target domain as without ``world`` (byte for byte).
- ``"iemocap"``: MMIN's IEMOCAP features (Zhao, Li and Jin, ACL 2021): acoustic 130 (ComParE
  LLDs), visual 342 (DenseFace), lexical 1024 (BERT-large); MulT's IEMOCAP split sizes
  2717 / 798 / 938 (Tsai et al., ACL 2019); four emotions with IEMOCAP's four-class balance over
  its 5531 utterances (neutral 1708, happy + excited 1636, angry 1103, sad 1084: 30.9 / 29.6 /
  19.9 / 19.6 %), labels ``(N, 4)`` int64, one positive per row, in the order of
  :data:`promptkit.metrics.EMOTIONS` (the form the loaders make of MulT's ``(N, 4, 2)``), scored
  as four binary tasks (``iemocap_binary``). Valence is the sentiment factor, arousal ``z[2]``:
  happy is high valence, neutral the middle band, the negative ones split by arousal (angry high,
  sad low), as in the circumplex reading of the four classes.
- ``"sims"``: MMSA's CH-SIMS features (Yu et al., ACL 2020): text 768 (BERT), audio 33
  (LibROSA), vision 709 (OpenFace 2.0); its 1368 / 456 / 457 split; regression labels in
  [-1, 1] on a 0.2 grid (the mean of five annotators), and unimodal labels per modality (CH-SIMS
  annotates each modality on its own): ``dataset.unimodal_labels[m]`` ``(N,)`` of every split,
  from that modality's own view of the two sentiment factors.

Calibration targets (published single-modality and complete figures for each data set; never a
figure of MPLMM): CH-SIMS's text is its strongest modality and audio/vision are well above chance
alone (MPLMM's Table 1 LB row, single-modality models: acc2 text 76.7, audio 63.8, vision 64.1);
IEMOCAP's text is the strongest, audio next and vision the weakest (MMIN's published four-class
accuracies, MPLMM's Table 1: text 68.0, audio 59.0, vision 51.6). IEMOCAP's audio carries arousal
(its shared gain 1.8), its text the valence most cleanly.

Measured (seed 0, 20 steps per modality, default sizes; ridge on the standardised averages of the
valid steps, penalty chosen on valid; test split)::

    available     CH-SIMS acc2   IEMOCAP 4-class accuracy (argmax of one-vs-rest ridge)
    text          76.6           63.5
    audio         67.0           58.0
    vision        65.6           49.8
    audio+vision  69.6           57.7
    text+audio    79.2           66.5
    text+vision   77.2           65.2
    all three     82.9           67.1

(Linear read-outs; IEMOCAP's classes are bands of valence and arousal, so a non-linear model does
better on every row.) Each target's mixings come from
a random stream of its own (the seed and a CRC-32 of the world's name), so the MOSI and MOSEI
worlds' bytes never change.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from .latents import N_LATENT, SENTIMENT_WEIGHTS
from .views import OFFSETS_V2, VIEWS_V2, ModalityView
from .world import _offset

__all__ = ["IEMOCAP_BALANCE", "WORLDS", "WORLD_METRICS", "World"]

_WORLD_STREAM = 0x776F726C  # first spawn-key word of a target world's own random streams
IEMOCAP_BALANCE: dict[str, float] = {"neutral": 1708 / 5531, "happy": 1636 / 5531, "sad": 1084 / 5531,
                                     "angry": 1103 / 5531}
"""IEMOCAP's four-class shares (MMIN's 5531 utterances; happy merged with excited)."""


@dataclass(frozen=True)
class World:
    """One data set's shapes and labels; ``label_kind`` ``"sentiment"`` (−3…3), ``"sims"`` or ``"iemocap"``."""

    name: str
    feature_dims: dict[str, int]
    sizes: dict[str, int]
    label_kind: str
    views: dict[str, ModalityView] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return "classification" if self.label_kind == "iemocap" else "regression"

    @property
    def out_dim(self) -> int:
        return 8 if self.label_kind == "iemocap" else 1


WORLDS: dict[str, World | None] = {
    "mosei": None,  # the source domain of the default generator
    "mosi": None,  # the target domain of the default generator
    "iemocap": World("iemocap", {"text": 1024, "audio": 130, "vision": 342},
                     {"train": 2717, "valid": 798, "test": 938}, "iemocap",
                     {"text": ModalityView(1.3, 0.1, 1.3, 0.1, 8, 0.5, 0.6),
                      "audio": ModalityView(0.5, 0.45, 1.8, 0.35, 2, 0.5, 0.4),
                      "vision": ModalityView(0.4, 0.35, 1.0, 0.45, 4, 0.5, 0.4)}),
    "sims": World("sims", {"text": 768, "audio": 33, "vision": 709},
                  {"train": 1368, "valid": 456, "test": 457}, "sims", dict(VIEWS_V2)),
}

WORLD_METRICS: dict[str, tuple[str, ...]] = {"mosei": ("mosei", "mosi"), "mosi": ("mosi", "mosei"),
                                             "iemocap": ("iemocap_binary",), "sims": ("sims",)}
"""The metric kinds that score each world's labels."""


def world_rng(seed: int, name: str, where: tuple[int, ...] = ()) -> np.random.Generator:
    """A target world's own stream: a function of ``seed``, its name and ``where`` (() the mixings, (i,) split i)."""
    key = (_WORLD_STREAM, zlib.crc32(name.encode()), *where)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=key)))


def world_mixings(rng: np.random.Generator, dims: dict[str, int], views: dict[str, ModalityView]) -> dict:
    """The world's feature extractors: per modality ``W`` (6, D), ``C`` (r, D) and the offset (D,)."""
    out: dict = {"W": {}, "C": {}, "offset": {}}
    for m, d in dims.items():
        v = views[m]
        out["W"][m] = rng.standard_normal((N_LATENT, d)) / np.sqrt(N_LATENT)
        out["C"][m] = rng.standard_normal((v.nuisance_rank, d)) * v.nuisance_scale / np.sqrt(v.nuisance_rank)
        out["offset"][m] = _offset(rng, out["W"][m][0], d, OFFSETS_V2.get(m, OFFSETS_V2["audio"]))
    return out


def iemocap_labels(rng: np.random.Generator, z: np.ndarray, sentiment: np.ndarray) -> np.ndarray:
    """``(N, 4)`` int64 one-hot emotions (neutral, happy, sad, angry) from the valence (the
    sentiment label ``(N,)``, −3…3) and the arousal ``z[:, 2]`` plus annotation noise."""
    valence = sentiment / 1.5  # ~ unit variance (the label is 1.5 s + noise, s of unit variance)
    arousal = z[:, 2] + 0.3 * rng.standard_normal(z.shape[0])
    sd_v, sd_a = float(np.sqrt(1 + (0.3 / 1.5) ** 2)), float(np.sqrt(1 + 0.3**2))
    b = IEMOCAP_BALANCE
    happy_at = NormalDist(0, sd_v).inv_cdf(1 - b["happy"])
    negative_at = NormalDist(0, sd_v).inv_cdf(b["sad"] + b["angry"])
    angry_at = NormalDist(0, sd_a).inv_cdf(b["sad"] / (b["sad"] + b["angry"]))
    cls = np.zeros(z.shape[0], np.int64)  # neutral
    cls[valence > happy_at] = 1
    negative = valence < negative_at
    cls[negative & (arousal <= angry_at)] = 2
    cls[negative & (arousal > angry_at)] = 3
    return np.eye(4, dtype=np.int64)[cls]


def _grid(x: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(x, -1.0, 1.0) * 5.0) / 5.0).astype(np.float32)


def sims_labels(rng: np.random.Generator, z: np.ndarray, sentiment: np.ndarray,
                views: dict[str, ModalityView]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """CH-SIMS labels: the overall score ``(N,)`` in [-1, 1] on a 0.2 grid, and per modality a
    unimodal score from that modality's own mix of the two sentiment factors plus its annotators' noise."""
    overall = _grid(sentiment / 2.5)
    unimodal = {}
    for m, v in views.items():
        w = np.array([v.verbal_gain, v.nonverbal_gain])
        s = z[:, :2] @ (w / max(np.linalg.norm(w), 1e-12))
        unimodal[m] = _grid((1.5 * s + 0.5 * rng.standard_normal(z.shape[0])) / 2.5)
    return overall, unimodal


__all__ += ["SENTIMENT_WEIGHTS", "iemocap_labels", "sims_labels", "world_mixings", "world_rng"]
