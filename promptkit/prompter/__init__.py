"""MPLMM prompts as a plug-in: config, the three prompt modules and the wrapper that owns the hooks."""

from ..adapter_files import AdapterLoadError
from .config import PrompterConfig
from .mmgm import MissingModalityGenerator
from .model import MissingModalityPrompter, unwrap, wrap
from .signal import MissingSignalPrompts
from .type_prompt import MissingTypePrompts
from .verify import HookError

__all__ = [
    "AdapterLoadError",
    "HookError",
    "MissingModalityGenerator",
    "MissingModalityPrompter",
    "MissingSignalPrompts",
    "MissingTypePrompts",
    "PrompterConfig",
    "unwrap",
    "wrap",
]
