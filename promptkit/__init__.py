"""promptkit: missing-modality prompt learning (MPLMM) and CGGM as plug-ins for MSA backbones."""

__version__ = "0.1.0"

from .hookspec import (
    HookSpec,
    ModalityEncoder,
    SignalTarget,
    TypeTarget,
    call_backbone,
    register_hook_spec,
)
from .modalities import ModalitySet
from .prompter import HookError, MissingModalityPrompter, PrompterConfig, unwrap, wrap

__all__ = [
    "HookError",
    "HookSpec",
    "MissingModalityPrompter",
    "ModalityEncoder",
    "ModalitySet",
    "PrompterConfig",
    "SignalTarget",
    "TypeTarget",
    "__version__",
    "call_backbone",
    "register_hook_spec",
    "unwrap",
    "wrap",
]
