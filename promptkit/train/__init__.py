"""Training, the engine only: the generic fit loop (:mod:`.engine` and the modules it names) and the
pretrain stage. Methods (:mod:`promptkit.methods`) and the experiment layer build on it; it imports
neither. The plug-in protocol is :mod:`promptkit.plugins`, backbone files :mod:`promptkit.backbone_files`."""

from .engine import fit
from .losses import NonFiniteLossError, task_loss
from .pretrain import pretrain
from .results import FitResult
from .run_dir import RunDirError
from .scoring import evaluate

__all__ = [
    "FitResult",
    "NonFiniteLossError",
    "RunDirError",
    "evaluate",
    "fit",
    "pretrain",
    "task_loss",
]
