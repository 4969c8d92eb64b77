"""Training: the generic fit loop (:mod:`.engine` and the modules it names), the pretrain stage, and
the plug-in protocol (defined in :mod:`promptkit.plugins`, re-exported here)."""

from .engine import FitResult, NonFiniteLossError, RunDirError, evaluate, fit, task_loss
from .plugins import TrainPlugin
from .pretrain import BACKBONE_FILE, build_backbone, load_backbone, pretrain, save_backbone

__all__ = [
    "BACKBONE_FILE",
    "FitResult",
    "NonFiniteLossError",
    "RunDirError",
    "TrainPlugin",
    "build_backbone",
    "evaluate",
    "fit",
    "load_backbone",
    "pretrain",
    "save_backbone",
    "task_loss",
]
