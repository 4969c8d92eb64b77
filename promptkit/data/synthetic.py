"""Seeded synthetic multimodal sentiment data with CMU-MOSI's shapes (NOT CMU-MOSI).

Everything here is synthetic: the calibration numbers below are measured on generated data and
only *imitate* published facts about CMU-MOSI / CMU-MOSEI; no real data is involved.

Shapes: splits 1284 / 229 / 686 (train / valid / test); text 300-d, audio 5-d, vision 20-d;
sequence lengths 50 / 50 / 50 (``aligned=True``) or 50 / 375 / 500 (``aligned=False``);
regression labels in [-3, 3] on a 0.2 grid (like an average of five integer ratings).
``version`` selects the generative process: 2 (default, below) or 1 (the original one, kept
byte for byte so old results can be regenerated).

Version 1
---------
Generative process (``seed`` fixes a *world*, the mixing matrices, and every sample's draws):

1. Latents ``z ~ N(0, I_6)`` per sample: ``z[0]`` a verbal sentiment factor, ``z[1]`` a
   non-verbal one (prosody, expression), ``z[2:]`` four shared non-sentiment factors (speaker
   style, arousal, topic...). Every modality sees all six.
2. Label ``y = round(clip(1.5 * (0.9 z[0] + 0.436 z[1]) + 0.3 e, -3, 3) * 5) / 5``: std ~1.45,
   about 5 % of labels exactly 0.
3. Per modality m a noisy *view* ``h_m = g_m * z + nu_m * xi_m`` (``xi_m ~ N(0, I_6)``), gains
   ``g_m`` = (verbal, non-verbal, shared) = text (1.0, 0.1, 1), audio (0.2, 0.5, 1),
   vision (0.12, 0.38, 1), ``nu_m = 0.5``: text holds a strong clean view of the sentiment,
   audio and vision weak ones (partly complementary, via z[1]); the shared factors make a
   missing modality partly predictable from the others (ridge R^2 of time-averaged audio from
   text + vision 0.50, vision from text + audio 0.43, text from audio + vision 0.42).
4. Static content ``c_m = h_m W_m + u_m C_m`` (D_m,): ``W_m`` (6, D_m) random mixing,
   ``u_m ~ N(0, I_r)`` modality-specific nuisance (r = 8 / 2 / 4) mixed by ``C_m`` (r, D_m).
5. Time: a valid fraction ``f ~ U(0.3, 1)`` of each sequence (left zero padding, as in the MulT
   pickles) and a random temporal profile ``a(r)`` in relative time (0.3 plus two Gaussian
   bumps, mean 1 over the valid steps), shared across modalities so aligned and unaligned
   versions carry the same events: ``x_m[t] = a(r_t) c_m + sigma_m eps_t`` on valid steps
   (``sigma`` = 0.6 / 0.4 / 0.4), 0 on padding.

Domains share the labels' weights, the gains and the latent structure. ``domain="source"``
(larger, like CMU-MOSEI for pre-training a backbone) mixes with ``W_m, C_m``; ``"target"``
(CMU-MOSI-like) with ``cos(θ) W_m + sin(θ) W'_m`` (same for C), ``θ = domain_shift * π/2``,
and per-step noise ``sigma_m * (1 + domain_shift / 2)``. At the default shift 0.2, ridge fit on
the source (all modalities) scores 74.7 % on the target test split against 83.9 % in-domain.

Measured difficulty: ridge regression on time-averaged, standardised features (penalty chosen
on valid), binary accuracy on the test split's non-zero labels, default sizes, target domain::

    features         seed 0   mean ± sd over seeds 0-4
    text             79.7     79.8 ± 1.2
    audio            58.4     60.3 ± 1.3
    vision           60.5     60.0 ± 2.4
    text+audio+vis   83.9     83.0 ± 1.9
    (unaligned: 79.8 / 60.5 / 61.2 / 83.1 mean; source domain: 80.5 / 62.0 / 59.7 / 83.8)

CMU-MOSI for comparison (paper Table 1, LB row): text ~79 %, audio ~48 %, vision ~49 %.
Generating the default target set takes 1-3 s on one CPU core. Version 1's default source
sizes are 2568 / 458 / 1372. Its flaw: zero-filling a missing modality is harmless to a
complete-trained linear model (text-less cases keep 57-61 %), so it cannot show the collapse
that missing-modality methods exist for.

Version 2 (default)
-------------------
Version 1's steps 1-5 with three changes, each modelled on a property of real extracted
features (GloVe/BERT, COVAREP, Facet) and none on any method:

a. *Non-zero-mean features.* Every valid step carries a fixed common offset ``o_m`` (D_m,)
   of the world: ``x_m[t] = o_m + a(r_t) c_m + sigma_m eps_t`` on valid steps, still exactly
   0 on the left padding (as in the MulT pickles). Per-feature RMS of ``o_m``: text 3.0,
   audio 0.5, vision 0.5 (content std ~1.1 per feature), so an all-zero text sequence is far
   out of distribution. The text offset has cosine 0.9 with the text's verbal-sentiment
   loading ``W_text[0]`` (the polarity coordinate of the embedding space has a baseline far
   from 0), the audio/vision offsets are random directions. Consequence: a model that reads
   text reads an absent (zero) text as an extreme sentiment, a large constant shift of its
   output. Shared by both domains (same feature extractors).
b. *Redundant audio/vision.* Gains (verbal, non-verbal, shared) text (1.0, 0.1, 1),
   audio (0.45, 0.4, 1), vision (0.3, 0.25, 1), ``nu_m = 0.5``: audio and vision see mostly
   the same verbal factor as text, more noisily, plus some non-verbal sentiment; a
   complete-data learner leans on text and uses audio/vision for the small complementary part.
c. Default source sizes CMU-MOSEI's 16326 / 1871 / 4659 (target stays 1284 / 229 / 686).

Measured (seeds 0-4, mean ± sd; default sizes and 50/50/50 steps, target domain): ridge
regression on time-averaged features, the average taken over the *valid* (non-padding) steps
(an all-zero, missing sequence averages to 0), standardised with the training statistics,
penalty from {0.1, ..., 1e4} chosen on valid MSE; binary accuracy on the test split's non-zero
labels. "alone": a model fit on those modalities only (the ceiling a method can hope to
recover for that case); "zero-filled": the model fit on all three, tested with the missing
modalities' raw features set to 0 before standardising::

    available     alone          zero-filled, complete-trained
    text          79.5 ± 1.1     78.3 ± 1.0
    audio         65.8 ± 4.7     51.2 ± 2.1
    vision        66.1 ± 1.4     51.2 ± 2.1
    text+audio    82.0 ± 2.5     81.5 ± 2.0
    text+vision   80.9 ± 2.2     81.1 ± 1.7
    audio+vision  71.1 ± 2.8     51.2 ± 2.1
    all three     83.4 ± 1.8     83.4 ± 1.8

(Text-less zero-filled cases predict a constant sign: their accuracy is the share of one sign
among the non-zero labels, hence identical for {a}, {v}, {a,v}.) Version 1 on the same
protocol: zero-filled audio 58.7, vision 57.3, audio+vision 61.2, text 79.2.
Unaligned (50/375/500 steps, seeds 0-1): alone text 78.9, audio 65.9, vision 67.3, all three
82.3; zero-filled text 78.7, audio+vision 51.2. Cross-modal predictability (ridge R^2 of the standardised, time-averaged features of one
modality from the other two, test split): text 43.4 ± 0.7 %, audio 51.6 ± 2.4 %,
vision 42.6 ± 3.5 %. Source domain in-domain (seeds 0-2): text 79.8, audio 70.0, vision 67.0,
all three 83.4, zero-filled audio+vision 50.3. Transfer (seeds 0-2; ridge fit on the default
source train split, penalty on source valid, tested on the target test split at the default
shift 0.2): all three 80.0 ± 2.5 against 82.8 ± 2.1 in-domain, text 79.7 ± 1.7.
With the time average over *all* steps (padding included) a linear model extrapolates a zero
sequence gracefully (zero-filled audio+vision 63.7 ± 4.0): the collapse is a property of
reading the valid steps, and of non-linear models (below), not of every estimator.

Neural check (seed 0, MulT ``d_model=30, num_heads=5, layers=2``, 20/20/20 steps, Adam 1e-3,
L1, batch 64, 15 epochs, best valid epoch; test with missing modalities zero-filled):
trained on complete data: all three 84.2, text 79.7, text+audio 81.7, text+vision 79.7,
audio 50.7, vision 55.3, audio+vision 57.0; trained with text and vision always zero (an
audio-only model): audio 64.5; with text and audio always zero (vision-only): vision 67.9.
A single seed, so about ±2 points.

Any modality set
----------------
``modalities=`` picks the modalities, in order (default text, audio, vision; at least one). The
three standard ones keep the views above. Any other name is an *extra* modality: a weak,
non-verbal view like audio's and vision's with a nuisance and noise of its own, by default
``EXTRA_VIEW`` (version 2: gains (verbal, non-verbal, shared) (0.3, 0.3, 1), ``nu = 0.5``, nuisance
rank 4, step noise 0.4, an offset of RMS 0.5 in a random direction; version 1: vision's gains
(0.12, 0.38, 1)) or the view given in ``views={name: ModalityView(...)}`` (a ``ModalityView`` or a
dict of its fields, so a recipe's ``[data.synthetic] views = { pose = { verbal_gain = 0.2, ... } }``
works; ``views`` may also replace a standard modality's view, which changes its data). An extra
modality has ``EXTRA_FEATURE_DIM`` = 16 features and the text's sequence length (50, or
``seq_lens["text"]``) unless ``feature_dims`` / ``seq_lens`` say otherwise. It shares the sample's
latents, label and temporal profile (aligned events) with every other modality; its own draws (its
mixings, offset, view noise, nuisance and per-step noise) come from a random stream of its own,
seeded by ``seed`` and a CRC-32 of its *name* (not its position), and the domains mix it like the
others (``cos θ W + sin θ W'``). Consequence: adding, removing or reordering extra modalities never
changes the other modalities' arrays, and the standard three are byte-identical to the data
without extras (a standard modality left out of ``modalities`` is still drawn, then dropped, so
those that stay are unchanged too). In recipes: ``[data.synthetic] modalities = ["text", "audio",
"vision", "pose"]``, ``feature_dims = { pose = 16 }``, ``seq_lens = { text = 20, ..., pose = 20 }``.

Generation (shared 2-core CPU, one thread, other jobs running): default target 1.2 s (0.14 GB
of features); default source with 20/20/20 steps 5 s (0.6 GB, peak RSS 1.2 GB); default
source with 50/50/50 steps 11 s (1.5 GB of features, peak RSS 2.1 GB; the unaligned source is
~2.5 GB). Drawing the per-step Gaussian noise dominates; the rest works in place, in blocks.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from .dataset import SPLITS, DataBundle, MSADataset

MODALITIES: tuple[str, ...] = ("text", "audio", "vision")
FEATURE_DIMS: dict[str, int] = {"text": 300, "audio": 5, "vision": 20}
ALIGNED_LENS: dict[str, int] = {"text": 50, "audio": 50, "vision": 50}
UNALIGNED_LENS: dict[str, int] = {"text": 50, "audio": 375, "vision": 500}
TARGET_SIZES: dict[str, int] = {"train": 1284, "valid": 229, "test": 686}
SOURCE_SIZES: dict[str, int] = {"train": 16326, "valid": 1871, "test": 4659}  # version 2: CMU-MOSEI's
SOURCE_SIZES_V1: dict[str, int] = {"train": 2568, "valid": 458, "test": 1372}
VERSIONS: tuple[int, ...] = (1, 2)
DESCRIPTION = "synthetic (promptkit embedded generator, CMU-MOSI shapes), NOT CMU-MOSI"

N_SENT = 2
N_SHARED = 4
N_LATENT = N_SENT + N_SHARED
SENTIMENT_WEIGHTS = np.array([0.9, np.sqrt(1 - 0.9**2)])  # verbal, non-verbal; unit norm


@dataclass(frozen=True)
class ModalityView:
    """How one modality sees the latents (see the module docstring, steps 3-5)."""

    verbal_gain: float  # g_m on the verbal sentiment factor z[0]
    nonverbal_gain: float  # g_m on the non-verbal sentiment factor z[1]
    shared_gain: float  # g_m on the shared non-sentiment factors
    view_noise: float  # nu_m
    nuisance_rank: int  # r, number of modality-specific nuisance factors
    nuisance_scale: float  # per-feature std of u_m C_m
    step_noise: float  # sigma_m


VIEWS: dict[str, ModalityView] = {
    "text": ModalityView(1.0, 0.1, 1.0, 0.5, 8, 0.5, 0.6),
    "audio": ModalityView(0.2, 0.5, 1.0, 0.5, 2, 0.5, 0.4),
    "vision": ModalityView(0.12, 0.38, 1.0, 0.5, 4, 0.5, 0.4),
}

# --- version 2 (see the module docstring) ---------------------------------------------------
VIEWS_V2: dict[str, ModalityView] = {
    "text": ModalityView(1.0, 0.1, 1.0, 0.5, 8, 0.5, 0.6),
    "audio": ModalityView(0.45, 0.4, 1.0, 0.5, 2, 0.5, 0.4),
    "vision": ModalityView(0.3, 0.25, 1.0, 0.5, 4, 0.5, 0.4),
}


@dataclass(frozen=True)
class FeatureOffset:
    """The common offset ``o_m`` every valid step carries (version 2)."""

    scale: float  # per-feature RMS of o_m
    verbal_align: float  # cosine between o_m and the modality's verbal-sentiment loading W_m[0]


OFFSETS_V2: dict[str, FeatureOffset] = {
    "text": FeatureOffset(3.0, 0.9),
    "audio": FeatureOffset(0.5, 0.0),
    "vision": FeatureOffset(0.5, 0.0),
}

# --- extra modalities (any name beyond text/audio/vision; see "Any modality set" above) ---------
EXTRA_VIEW: dict[int, ModalityView] = {  # by version
    1: ModalityView(0.12, 0.38, 1.0, 0.5, 4, 0.5, 0.4),
    2: ModalityView(0.3, 0.3, 1.0, 0.5, 4, 0.5, 0.4),
}
EXTRA_OFFSET = FeatureOffset(0.5, 0.0)  # version 2
EXTRA_FEATURE_DIM = 16
_EXTRA_STREAM = 0x6D6F64  # first spawn-key word of the extra modalities' own random streams


def make_synthetic_mosi(
    seed: int = 0,
    aligned: bool = True,
    sizes: Sequence[int] | Mapping[str, int] | None = None,
    domain: str = "target",
    domain_shift: float = 0.2,
    seq_lens: Mapping[str, int] | None = None,
    feature_dims: Mapping[str, int] | None = None,
    version: int = 2,
    modalities: Sequence[str] | None = None,
    views: Mapping[str, ModalityView | Mapping[str, Any]] | None = None,
) -> DataBundle:
    """Generate the synthetic data set; same arguments → same bytes (on one platform).

    Args:
        seed: seeds the world (mixing matrices) and the samples; the source and target
            domains of one seed share the world, so pre-train on one and adapt on the other.
        aligned: sequence lengths 50/50/50 (True) or 50/375/500 (False).
        sizes: ``(n_train, n_valid, n_test)`` or a dict by split; default 1284/229/686
            for the target domain; for the source domain CMU-MOSEI's 16326/1871/4659
            (version 2) or 2568/458/1372 (version 1).
        domain: ``"target"`` (CMU-MOSI-like) or ``"source"`` (larger pre-training domain).
        domain_shift: in [0, 1]; how far the target's mixing and noise move from the source's.
        seq_lens: override the lengths per modality (e.g. short sequences for fast tests); an
            extra modality defaults to the text's length.
        feature_dims: override the feature sizes per modality; an extra modality defaults to 16.
        version: the generative process, 2 (default) or 1 (the original one; same arguments
            give the same bytes as before version 2 existed, so old results can be regenerated).
        modalities: the modality names, in mask order (default text, audio, vision). Names other
            than those three are extra modalities (module docstring, "Any modality set").
        views: modality → :class:`ModalityView` (or a dict of its fields) for extra modalities,
            or to replace a standard modality's view; default ``EXTRA_VIEW[version]``.

    Returns:
        a regression :class:`DataBundle`; features ``(N, T_m, D_m)`` float32, labels ``(N,)``.
    """
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or int(version) not in VERSIONS:
        raise ValueError(f"version must be one of {list(VERSIONS)}, got {version!r}")
    version = int(version)
    if domain not in ("source", "target"):
        raise ValueError(f"domain must be 'source' or 'target', got {domain!r}")
    if not 0.0 <= float(domain_shift) <= 1.0:
        raise ValueError(f"domain_shift must lie in [0, 1], got {domain_shift}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    source_sizes = SOURCE_SIZES if version == 2 else SOURCE_SIZES_V1
    n_split = _resolve_sizes(sizes, TARGET_SIZES if domain == "target" else source_sizes)
    mods = _resolve_modalities(modalities)
    extras = tuple(m for m in mods if m not in MODALITIES)
    std_lens = ALIGNED_LENS if aligned else UNALIGNED_LENS
    lens = _resolve_per_modality(seq_lens, std_lens, "seq_lens", mods)
    lens = {**lens, **{m: int((seq_lens or {}).get(m, lens["text"])) for m in extras}}
    dims = _resolve_per_modality(feature_dims, FEATURE_DIMS, "feature_dims", mods)
    dims = {**dims, **{m: int((feature_dims or {}).get(m, EXTRA_FEATURE_DIM)) for m in extras}}
    mod_views = _resolve_views(views, mods, version)

    world_seq, source_seq, target_seq = np.random.SeedSequence(int(seed)).spawn(3)
    world_rng = np.random.Generator(np.random.PCG64(world_seq))
    std_views = {m: mod_views.get(m, VIEWS[m]) for m in MODALITIES}  # the world's nuisance ranks/scales
    world = _make_world(world_rng, dims, std_views) if version == 1 else _make_world_v2(world_rng, dims, std_views)
    for m in extras:  # each from its own stream: the standard modalities' draws stay as they were
        _add_extra_world(world, m, _extra_rng(seed, m), dims[m], mod_views[m], version)
    theta = float(domain_shift) * np.pi / 2
    named = (*MODALITIES, *extras)
    if domain == "source":
        mixing, nuisance, noise_mult = world["W"], world["C"], 1.0
        split_seqs = source_seq.spawn(len(SPLITS))
    else:
        mixing = {m: np.cos(theta) * world["W"][m] + np.sin(theta) * world["W_alt"][m] for m in named}
        nuisance = {m: np.cos(theta) * world["C"][m] + np.sin(theta) * world["C_alt"][m] for m in named}
        noise_mult = 1.0 + float(domain_shift) / 2
        split_seqs = target_seq.spawn(len(SPLITS))

    # a standard modality that is left out is still drawn when a later one is kept (then dropped)
    last_std = max((MODALITIES.index(m) for m in mods if m in MODALITIES), default=-1)
    drawn = MODALITIES[: last_std + 1]
    offset = world.get("offset")
    splits = {}
    for i, (split, ss) in enumerate(zip(SPLITS, split_seqs)):
        rng = np.random.Generator(np.random.PCG64(ss))
        if version == 1:
            feats, labels, latents = _generate_split(rng, n_split[split], mixing, nuisance, noise_mult, lens, drawn,
                                                      mod_views)
        else:
            feats, labels, latents = _generate_split_v2(
                rng, n_split[split], mixing, nuisance, offset, noise_mult, lens, drawn, mod_views
            )
        for m in extras:
            extra_rng = _extra_rng(seed, m, (0 if domain == "source" else 1, i))
            z, times = latents
            feats[m] = _modality_features(extra_rng, z, times, mod_views[m], mixing[m], nuisance[m],
                                          None if offset is None else offset[m], noise_mult, lens[m])
        splits[split] = MSADataset({m: feats[m] for m in mods}, labels, modalities=mods)

    kind = "aligned" if aligned else "unaligned"
    shift = f", domain_shift={domain_shift}" if domain == "target" else ""
    info = {"format": "synthetic", "version": version, "seed": int(seed), "domain": domain,
            "domain_shift": float(domain_shift), "aligned": bool(aligned)}
    described = ""
    if mods != MODALITIES or views:
        info["modalities"] = list(mods)
        described = f", modalities={'/'.join(mods)}"
        if views:
            info["views"] = {m: dict(vars(v)) for m, v in mod_views.items() if m in views}
            described += f" (views set for {'/'.join(m for m in mods if m in views)})"
    return DataBundle(
        splits=splits,
        modalities=mods,
        feature_dims={m: dims[m] for m in mods},
        seq_lens={m: lens[m] for m in mods},
        task="regression",
        out_dim=1,
        description=f"{DESCRIPTION}; generator v{version}, seed={seed}, domain={domain}{shift}, {kind}{described}",
        name=f"synthetic-mosi-{domain}",
        info=info,
    )


def _resolve_modalities(modalities: Sequence[str] | None) -> tuple[str, ...]:
    """The requested modality names, checked: identifiers, no repeats, not a reserved batch key."""
    if modalities is None:
        return MODALITIES
    if isinstance(modalities, str):
        raise TypeError(f"modalities must be a list of names, got the string {modalities!r}")
    mods = tuple(modalities)
    if not mods:
        raise ValueError("modalities must name at least one modality")
    for m in mods:
        if not isinstance(m, str) or not m.isidentifier():
            raise ValueError(f"modality name {m!r} must be a Python identifier (a string such as 'pose')")
        if m in ("labels", "mask", "index"):
            raise ValueError(f"{m!r} is a reserved batch key and cannot name a modality")
    if len(set(mods)) != len(mods):
        raise ValueError(f"modalities must not repeat, got {list(mods)}")
    return mods


def _resolve_views(views, mods: tuple[str, ...], version: int) -> dict[str, ModalityView]:
    """Modality → its view: ``views`` where given, the default for extras; standard ones omitted."""
    given = dict(views or {})
    unknown = set(given) - set(mods)
    if unknown:
        raise KeyError(f"views names unknown modality {sorted(unknown)}; modalities: {list(mods)}")
    allowed = [f.name for f in fields(ModalityView)]
    out: dict[str, ModalityView] = {}
    for m in mods:
        v = given.get(m)
        if v is None:
            if m not in MODALITIES:
                out[m] = EXTRA_VIEW[version]
            continue
        if isinstance(v, Mapping):
            bad = set(v) - set(allowed)
            if bad:
                raise KeyError(f"views[{m!r}] has unknown field(s) {sorted(bad)}; fields: {allowed}")
            base = EXTRA_VIEW[version] if m not in MODALITIES else (VIEWS if version == 1 else VIEWS_V2)[m]
            v = ModalityView(**{**vars(base), **v})
        if not isinstance(v, ModalityView):
            raise TypeError(f"views[{m!r}] must be a ModalityView or a dict of its fields, got {type(v).__name__}")
        if isinstance(v.nuisance_rank, bool) or not isinstance(v.nuisance_rank, (int, np.integer)) or v.nuisance_rank < 1:
            raise ValueError(f"views[{m!r}].nuisance_rank must be a positive int, got {v.nuisance_rank!r}")
        for f in allowed:
            x = getattr(v, f)
            if f != "nuisance_rank" and (isinstance(x, bool) or not isinstance(x, (int, float)) or not np.isfinite(x)
                                         or (f in ("view_noise", "nuisance_scale", "step_noise") and x < 0)):
                raise ValueError(f"views[{m!r}].{f} must be a finite number (>= 0 for noise and scale), got {x!r}")
        out[m] = v
    return out


def _extra_rng(seed: int, name: str, where: tuple[int, ...] = ()) -> np.random.Generator:
    """An extra modality's own stream: a function of ``seed``, its name and ``where`` (domain, split)."""
    key = (_EXTRA_STREAM, zlib.crc32(name.encode()), *where)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=key)))


def _add_extra_world(world: dict, name: str, rng: np.random.Generator, d: int, v: ModalityView, version: int) -> None:
    """An extra modality's mixings ``W, W_alt`` (6, D), ``C, C_alt`` (r, D) and (version 2) offset (D,)."""
    for key in ("W", "W_alt"):
        world[key][name] = rng.standard_normal((N_LATENT, d)) / np.sqrt(N_LATENT)
    for key in ("C", "C_alt"):
        world[key][name] = rng.standard_normal((v.nuisance_rank, d)) * v.nuisance_scale / np.sqrt(v.nuisance_rank)
    if version == 2:
        world["offset"][name] = _offset(rng, world["W"][name][0], d, EXTRA_OFFSET)


def _resolve_sizes(sizes, default: Mapping[str, int]) -> dict[str, int]:
    if sizes is None:
        return dict(default)
    if isinstance(sizes, Mapping):
        if set(sizes) != set(SPLITS):
            raise KeyError(f"sizes must name the splits {list(SPLITS)}, got {sorted(sizes)}")
        out = {s: sizes[s] for s in SPLITS}
    else:
        sizes = list(sizes)
        if len(sizes) != 3:
            raise ValueError(f"sizes must be (n_train, n_valid, n_test), got {sizes}")
        out = dict(zip(SPLITS, sizes))
    for s, n in out.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"size of split {s!r} must be a positive int, got {n!r}")
    return {s: int(n) for s, n in out.items()}


def _resolve_per_modality(
    values, default: Mapping[str, int], what: str, mods: Sequence[str] = MODALITIES
) -> dict[str, int]:
    """The standard three modalities' sizes (defaults overridden by ``values``); checks every entry
    of ``values``, which may also name the extra modalities of ``mods`` (resolved by the caller)."""
    if values is None:
        return dict(default)
    unknown = set(values) - set(mods)
    if unknown:
        raise KeyError(f"{what} names unknown modality {sorted(unknown)}; modalities: {list(mods)}")
    out = {**default, **values}
    for m, v in out.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{what}[{m!r}] must be a positive int, got {v!r}")
    return {m: int(out[m]) for m in MODALITIES}


def _make_world(
    rng: np.random.Generator, dims: Mapping[str, int], views: Mapping[str, ModalityView] = VIEWS
) -> dict:
    """Mixings per standard modality: ``W`` (6, D_m), ``C`` (r, D_m) and the alternatives the
    target mixes in (``views`` gives each one's nuisance rank and scale)."""
    world: dict = {"W": {}, "W_alt": {}, "C": {}, "C_alt": {}}
    for m in MODALITIES:
        d, v = dims[m], views[m]
        for key in ("W", "W_alt"):  # (6, D): a unit-variance view gives unit-variance features
            world[key][m] = rng.standard_normal((N_LATENT, d)) / np.sqrt(N_LATENT)
        for key in ("C", "C_alt"):
            world[key][m] = rng.standard_normal((v.nuisance_rank, d)) * v.nuisance_scale / np.sqrt(v.nuisance_rank)
    return world


def _draw_latents(rng: np.random.Generator, n: int):
    """Steps 1-2 and the time draws of step 5, in the order both versions draw them: latents
    ``z (N, 6)``, labels ``(N,)`` and the temporal-profile parameters."""
    z = rng.standard_normal((n, N_LATENT))
    y = 1.5 * z[:, :N_SENT] @ SENTIMENT_WEIGHTS + 0.3 * rng.standard_normal(n)
    labels = (np.round(np.clip(y, -3.0, 3.0) * 5.0) / 5.0).astype(np.float32)
    frac = rng.uniform(0.3, 1.0, n)
    centers = rng.uniform(0.0, 1.0, (n, 2))
    widths = rng.uniform(0.05, 0.25, (n, 2))
    heights = rng.uniform(0.5, 2.0, (n, 2))
    return z, labels, (frac, centers, widths, heights)


def _draw_view(rng: np.random.Generator, z: np.ndarray, v: ModalityView) -> tuple[np.ndarray, np.ndarray]:
    """Step 3-4's draws for one modality: its noisy view ``h (N, 6)`` and nuisance ``u (N, r)``."""
    n = z.shape[0]
    gains = np.array([v.verbal_gain, v.nonverbal_gain] + [v.shared_gain] * N_SHARED)
    h = gains * z + v.view_noise * rng.standard_normal((n, N_LATENT))
    return h, rng.standard_normal((n, v.nuisance_rank))


def _generate_split(
    rng: np.random.Generator,
    n: int,
    mixing: Mapping[str, np.ndarray],
    nuisance: Mapping[str, np.ndarray],
    noise_mult: float,
    lens: Mapping[str, int],
    drawn: Sequence[str] = MODALITIES,
    views: Mapping[str, ModalityView] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, tuple]:
    """Version 1: the standard modalities ``drawn`` (a prefix of text, audio, vision) from ``rng``.

    Returns:
        features ``{m: (N, T_m, D_m)}``, labels ``(N,)`` and the latents ``(z, time params)``
        the extra modalities share.
    """
    z, labels, times = _draw_latents(rng, n)
    feats = {}
    for m in drawn:
        v = (views or {}).get(m, VIEWS[m])
        feats[m] = _modality_features(rng, z, times, v, mixing[m], nuisance[m], None, noise_mult, lens[m])
    return feats, labels, (z, times)


def _modality_features(
    rng: np.random.Generator,
    z: np.ndarray,
    times: tuple,
    v: ModalityView,
    mixing: np.ndarray,
    nuisance: np.ndarray,
    offset: np.ndarray | None,
    noise_mult: float,
    t_len: int,
) -> np.ndarray:
    """Steps 3-5 for one modality: ``(N, T, D)`` float32 from latents ``z (N, 6)``.

    ``offset`` None is version 1 (no offset, one pass); an offset ``(D,)`` is version 2 (in place,
    block by block). Both draw, in order: the view noise, the nuisance, the per-step noise.
    """
    n = z.shape[0]
    h, u = _draw_view(rng, z, v)
    if offset is None:
        static = h @ mixing + u @ nuisance  # (N, D)
        profile = _temporal_profile(*times, t_len)  # (N, T)
        x = rng.standard_normal((n, t_len, static.shape[1]), dtype=np.float32)
        x *= np.float32(v.step_noise * noise_mult)
        x += profile[:, :, None].astype(np.float32) * static[:, None, :].astype(np.float32)
        x *= (profile > 0)[:, :, None]
        return x
    static = (h @ mixing + u @ nuisance).astype(np.float32)  # (N, D)
    profile = _temporal_profile(*times, t_len).astype(np.float32)  # (N, T)
    valid = profile > 0
    off = offset.astype(np.float32)
    x = rng.standard_normal((n, t_len, static.shape[1]), dtype=np.float32)
    for i in range(0, n, _CHUNK):  # in place, block by block: x = (o + a(r_t) c + sigma eps) * valid
        xb = x[i : i + _CHUNK]
        xb *= np.float32(v.step_noise * noise_mult)
        xb += profile[i : i + _CHUNK, :, None] * static[i : i + _CHUNK, None, :]
        xb += off
        xb *= valid[i : i + _CHUNK, :, None]
    return x


def _temporal_profile(frac, centers, widths, heights, t_len: int) -> np.ndarray:
    """Per-sample profile ``(N, T)``: 0 on the left padding, mean 1 over the valid steps."""
    valid = np.maximum(1, np.round(frac * t_len)).astype(int)  # (N,)
    start = t_len - valid
    steps = np.arange(t_len)[None, :]
    rel = (steps - start[:, None] + 0.5) / valid[:, None]  # relative time in (0, 1) on valid steps
    bumps = heights[:, None, :] * np.exp(-0.5 * ((rel[:, :, None] - centers[:, None, :]) / widths[:, None, :]) ** 2)
    prof = 0.3 + bumps.sum(-1)
    mask = steps >= start[:, None]
    prof = prof * mask
    prof /= prof.sum(1, keepdims=True) / valid[:, None]
    return prof


def _make_world_v2(
    rng: np.random.Generator, dims: Mapping[str, int], views: Mapping[str, ModalityView] = VIEWS
) -> dict:
    """Version 2: the mixings of :func:`_make_world` plus a common offset ``o_m`` (D_m,) per modality."""
    world = _make_world(rng, dims, views)
    world["offset"] = {}
    for m in MODALITIES:
        world["offset"][m] = _offset(rng, world["W"][m][0], dims[m], OFFSETS_V2[m])
    return world


def _offset(rng: np.random.Generator, verbal_loading: np.ndarray, d: int, o: FeatureOffset) -> np.ndarray:
    """An offset ``(D,)`` of per-feature RMS ``o.scale`` at cosine ``o.verbal_align`` to the loading."""
    verbal = verbal_loading / np.linalg.norm(verbal_loading)
    r = rng.standard_normal(d)
    r -= (r @ verbal) * verbal  # the part orthogonal to the verbal loading
    r /= max(np.linalg.norm(r), 1e-12)
    direction = o.verbal_align * verbal + np.sqrt(max(0.0, 1 - o.verbal_align**2)) * r
    return o.scale * np.sqrt(d) * direction


_CHUNK = 2048  # samples per in-place block: bounds the temporaries of large splits


def _generate_split_v2(
    rng: np.random.Generator,
    n: int,
    mixing: Mapping[str, np.ndarray],
    nuisance: Mapping[str, np.ndarray],
    offset: Mapping[str, np.ndarray],
    noise_mult: float,
    lens: Mapping[str, int],
    drawn: Sequence[str] = MODALITIES,
    views: Mapping[str, ModalityView] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, tuple]:
    """Version 2: as :func:`_generate_split`, every valid step carrying its modality's offset."""
    z, labels, times = _draw_latents(rng, n)
    feats = {}
    for m in drawn:
        v = (views or {}).get(m, VIEWS_V2[m])
        feats[m] = _modality_features(rng, z, times, v, mixing[m], nuisance[m], offset[m], noise_mult, lens[m])
    return feats, labels, (z, times)
