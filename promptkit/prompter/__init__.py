"""MPLMM prompts as a plug-in: config, the three prompt modules and the wrapper that owns the hooks."""

from .config import PrompterConfig
from .io import AdapterLoadError
from .mmgm import MissingModalityGenerator
from .model import MissingModalityPrompter, unwrap, wrap
from .verify import HookError
from .signal import MissingSignalPrompts
from .type_prompt import MissingTypePrompts, PerCaseTypePrompts, per_case_prompt_parameters

__all__ = [
    "AdapterLoadError",
    "HookError",
    "MissingModalityGenerator",
    "MissingModalityPrompter",
    "MissingSignalPrompts",
    "MissingTypePrompts",
    "PerCaseTypePrompts",
    "PrompterConfig",
    "per_case_prompt_parameters",
    "unwrap",
    "wrap",
]
