"""promptkit: missing-modality prompt learning (MPLMM) and CGGM as plug-ins for MSA backbones."""

__version__ = "0.1.0"

from .hookspec import HookSpec, ModalityEncoder, SignalTarget, TypeTarget, register_hook_spec
from .modalities import ModalitySet
from .prompter import MissingModalityPrompter, PrompterConfig, wrap

__all__ = [
    "HookSpec",
    "MissingModalityPrompter",
    "ModalityEncoder",
    "ModalitySet",
    "PrompterConfig",
    "SignalTarget",
    "TypeTarget",
    "__version__",
    "register_hook_spec",
    "wrap",
]
