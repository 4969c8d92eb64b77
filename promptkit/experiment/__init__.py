"""The experiment layer: a recipe's whole run and grids of runs, above the engine and the methods.

* :mod:`.pipeline` - ``promptkit run``: backbone, each method of ``[prompt] methods``, the evaluation
  protocol, paired comparisons (:func:`run_pipeline`).
* :mod:`.sweep` - ``promptkit sweep``: a grid of recipe overrides × seeds, one pipeline run per cell.
"""

from .pipeline import check_methods, comparisons, obtain_backbone, run_pipeline
from .sweep import run_sweep

__all__ = ["check_methods", "comparisons", "obtain_backbone", "run_pipeline", "run_sweep"]
