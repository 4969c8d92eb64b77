"""MMSA 2.2.1's MulT, the field's reference implementation, as a speed comparator.

Install it without its dependencies (pandas, scikit-learn, ...; none is needed for the model)::

    pip install --no-deps MMSA==2.2.1

Only the model's own files are loaded (``models/singleTask/MULT.py`` and its transformer), under a
private package name, so MMSA's package ``__init__`` (which imports its whole training stack) never
runs. :func:`mmsa_mult` builds it with the configuration of a promptkit :class:`~backbones.mult.MulT`,
so that the two compute the same function at the same sizes.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

from torch import nn

PACKAGE = "_mmsa_reference_models"
VERSION = "2.2.1"


def mmsa_models_dir() -> Path | None:
    """The installed MMSA's ``models`` directory, or None when MMSA is not installed."""
    spec = importlib.util.find_spec("MMSA")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    return models if (models / "singleTask" / "MULT.py").is_file() else None


def _package(name: str, path: Path, **attrs: Any) -> None:
    module = types.ModuleType(name)
    module.__path__ = [str(path)]  # a package whose __init__ is never executed
    module.__dict__.update(attrs)
    sys.modules[name] = module


def load_mmsa_mult() -> type[nn.Module]:
    """MMSA's ``MULT`` class.

    Raises:
        ModuleNotFoundError: MMSA is not installed (the message says how to install it).
    """
    if f"{PACKAGE}.singleTask.MULT" in sys.modules:
        return sys.modules[f"{PACKAGE}.singleTask.MULT"].MULT
    models = mmsa_models_dir()
    if models is None:
        raise ModuleNotFoundError(f"MMSA is not installed; for the reference timings: pip install --no-deps MMSA=={VERSION}")
    _package(PACKAGE, models)
    _package(f"{PACKAGE}.subNets", models / "subNets", BertTextEncoder=None)  # only used with use_bert
    _package(f"{PACKAGE}.singleTask", models / "singleTask")
    return importlib.import_module(f"{PACKAGE}.singleTask.MULT").MULT


def mmsa_mult(ours: nn.Module) -> nn.Module:
    """MMSA's MULT with the configuration of ``ours`` (a promptkit MulT over text, audio, vision).

    Widths, heads, layers, every dropout and the future mask match; the text dropout of MMSA is
    ours ``embed_dropout`` on the first modality's raw features; the kernel-1 convolutions are the
    same projections. Forward: ``model(text, audio, video)["M"]`` ``(B, 1)``.
    """
    cfg = ours.config()
    dims = cfg["feature_dims"]
    if list(dims) != ["text", "audio", "vision"]:
        raise ValueError(f"MMSA's MULT takes text, audio and vision; this MulT has {list(dims)}")
    cross = cfg["cross_attn_dropout"]
    if cross["text"] != cfg["attn_dropout"]:
        raise ValueError(f"MMSA's MULT uses one attention dropout for text keys and the memories; this MulT has "
                         f"{cross['text']} and {cfg['attn_dropout']}")
    args = types.SimpleNamespace(
        use_bert=False, use_finetune=False, transformers=None, pretrained=None,
        dst_feature_dim_nheads=(cfg["d_model"], cfg["num_heads"]), feature_dims=tuple(dims.values()),
        nlevels=cfg["layers"], attn_dropout=cfg["attn_dropout"], attn_dropout_a=cross["audio"],
        attn_dropout_v=cross["vision"], relu_dropout=cfg["relu_dropout"], embed_dropout=cfg["embed_dropout"],
        res_dropout=cfg["res_dropout"], output_dropout=cfg["out_dropout"], text_dropout=cfg["embed_dropout"],
        attn_mask=cfg["attn_mask"], conv1d_kernel_size_l=1, conv1d_kernel_size_a=1, conv1d_kernel_size_v=1,
        num_classes=1, train_mode="regression",
    )
    return load_mmsa_mult()(args)
