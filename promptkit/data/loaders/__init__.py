"""Read users' data files into a :class:`DataBundle`, checking them on the way in.

Formats (``format=`` in :func:`load_data`, else detected):

- ``"mult"``: MulT pickles (CMU-MOSI/MOSEI/IEMOCAP ``*_data.pkl``):
  ``{split: {"text": (N, T, D), "audio": ..., "vision": ..., "labels": ..., "id": optional}}``.
  Labels ``(N, 1, 1)`` → regression; IEMOCAP's ``(N, 4, 2)`` one-hot → four binary tasks,
  long ``(N, 4)`` (the index of the hot entry), ``out_dim = 8``.
- ``"mmsa"``: MMSA pickles (CH-SIMS, MOSI/MOSEI by the MMSA toolkit): per split ``"text"``
  ``(N, T, 768)``, ``"audio"``, ``"vision"``, ``"regression_labels"`` ``(N,)`` (or
  ``"classification_labels"`` with ``task="classification"``); other keys (``raw_text``, ``id``,
  ...) are ignored, except that ``"<modality>_lengths"`` (``audio_lengths``, ``vision_lengths``,
  ``pose_lengths``, ...), when present for a modality that is read, must hold one length per
  sample of that modality. ``"text_bert"``, MMSA's BERT token ids ``(N, 3, T)`` (ids, attention
  mask, segment ids; stored as integers or as floats holding integers), is read as the text
  with ``text="tokens"`` (``[data] text = "tokens"``): int64, ``feature_dims["text"]`` its
  vocabulary size (``vocab_size=``, default the largest id + 1); see :mod:`promptkit.data.tokens`.
- ``"h5"`` (needs ``h5py``), an MMIN-style layout::

      /train/text    (N, T_t, D_t) float     (MMIN's name "L" is accepted too)
      /train/audio   (N, T_a, D_a) float     ("A")
      /train/vision  (N, T_v, D_v) float     ("V")
      /train/label   (N,) int class ids (IEMOCAP 4-class), or (N,) float for regression,
                     or (N, 4, 2) / (N, 4) for four binary tasks   ("labels" accepted too)
      /valid/...     ("dev" or "val" accepted)
      /test/...
      root attribute "num_classes" (optional, an integer; default: largest class id + 1)

  The file is read only for itself: a dataset keeping its data in external files (external raw
  storage), a virtual dataset (mapped from other files) and an external link (to an object in
  another file, also one reached through a soft link) are refused, naming the split and dataset,
  before anything is read from them. Soft links within the file are followed.

**Modalities.** ``modalities=`` picks the modalities to read; the default is the standard three,
``("text", "audio", "vision")``. Any Python-identifier name may be given (not ``labels``, ``mask``
or ``index``, the batch keys): an extra name such as ``"pose"`` is read from the key of that name
in every split, in all three formats (``(N, T, D)`` like the others). The bundle's modality order
(the batch/mask order) is the standard modalities that were asked for, in the canonical order
text, audio, vision, then the extra ones in the order given: ``["pose", "vision", "text"]`` gives
``("text", "vision", "pose")``. A requested key that a split lacks is an error naming the file, the
split and the key and listing the keys present. With the default modalities, a MulT pickle or an
h5 split holding any other key is an error (it names the key; pass ``modalities=`` to read it,
or to read a subset); with ``modalities`` given, keys not asked for are not read.

Split names ``train``/``valid``/``test``; ``dev`` and ``val`` mean ``valid``. In audio, ``-inf``
(a known quirk of the MulT CMU-MOSI/MOSEI files) becomes 0 with a warning that counts them; any
other NaN/inf, in any modality, is an error naming split, modality and sample indices. A modality
with no features (``D = 0``) or no time steps (``T = 0``) is an error.

**Sizes.** What loading allocates is counted against a size limit before it is allocated (see
:mod:`promptkit.data.limits`; ``max_bytes=`` overrides it): each array as declared, a nested list
at the size it stacks to (a list referenced many times counted each time), and the float32/int64
copies the loaders make (an int8 dataset counts 6 bytes an element, not 1). A file that needs more
is refused with a :class:`~promptkit.data.limits.DataSizeError` naming the array and the size.

**Classes.** A classification file's class count (largest class id + 1, the h5 ``num_classes``
attribute, or two outputs per binary task) sizes the model head, so it may be at most
``max(10000, the number of samples)`` (:func:`~promptkit.data.limits.class_limit`;
``$PROMPTKIT_MAX_CLASSES`` replaces it): more is a :class:`DataFormatError` naming the file, the
key and the value.

Modules, in the order a file is read: :mod:`.detect` (:func:`load_data`: synthetic or a file,
the format given or detected), the formats :mod:`.pickles` (MulT and MMSA) and :mod:`.h5`,
:mod:`.layout` (modality, split and key names), :mod:`.arrays` (stacking nested lists, counted),
:mod:`.checks` (features and labels), :mod:`.bundle` (the splits assembled into a bundle) and
:mod:`.errors`.
"""

from .detect import FORMATS, load_data
from .errors import AudioInfWarning, DataFormatError
from .h5 import load_h5
from .layout import MODALITIES, RESERVED_NAMES, SPLIT_ALIASES
from .pickles import load_mmsa_pickle, load_mult_pickle

__all__ = [
    "FORMATS",
    "MODALITIES",
    "RESERVED_NAMES",
    "SPLIT_ALIASES",
    "AudioInfWarning",
    "DataFormatError",
    "load_data",
    "load_h5",
    "load_mmsa_pickle",
    "load_mult_pickle",
]
