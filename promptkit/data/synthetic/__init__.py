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

Worlds
------
``world="mosei" | "mosi" | "iemocap" | "sims"``: the paper's four data sets from this one process
(:mod:`.worlds`): the MOSEI-like source, the MOSI-like target (the default) and IEMOCAP- and
CH-SIMS-like targets in feature spaces of their own (MMIN's and MMSA's feature sizes), with their
split sizes and labels (four emotions; scores in [-1, 1] with unimodal labels), sharing the latent
factors, so a backbone pre-trained on the source transfers through re-initialised input projections.

Modules, in the order the generator reads them: :mod:`.shapes` and :mod:`.views` (the
parameters), :mod:`.options` (the arguments checked and resolved), :mod:`.world` (what the seed
fixes: mixings, offsets), :mod:`.latents` (each sample's shared draws), :mod:`.features` (the
per-modality arrays) and :mod:`.generator` (:func:`make_synthetic_mosi`: the splits and the bundle).
"""

from .generator import make_synthetic_mosi
from .worlds import WORLDS, World
from .latents import N_LATENT, N_SENT, N_SHARED, SENTIMENT_WEIGHTS
from .shapes import (
    ALIGNED_LENS,
    DESCRIPTION,
    FEATURE_DIMS,
    MODALITIES,
    SOURCE_SIZES,
    SOURCE_SIZES_V1,
    TARGET_SIZES,
    UNALIGNED_LENS,
    VERSIONS,
)
from .views import (
    EXTRA_FEATURE_DIM,
    EXTRA_OFFSET,
    EXTRA_VIEW,
    OFFSETS_V2,
    VIEWS,
    VIEWS_V2,
    FeatureOffset,
    ModalityView,
)

__all__ = [
    "ALIGNED_LENS",
    "DESCRIPTION",
    "EXTRA_FEATURE_DIM",
    "EXTRA_OFFSET",
    "EXTRA_VIEW",
    "FEATURE_DIMS",
    "MODALITIES",
    "N_LATENT",
    "N_SENT",
    "N_SHARED",
    "OFFSETS_V2",
    "SENTIMENT_WEIGHTS",
    "SOURCE_SIZES",
    "SOURCE_SIZES_V1",
    "TARGET_SIZES",
    "UNALIGNED_LENS",
    "VERSIONS",
    "VIEWS",
    "VIEWS_V2",
    "WORLDS",
    "FeatureOffset",
    "ModalityView",
    "World",
    "make_synthetic_mosi",
]
