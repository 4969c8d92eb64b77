"""The training plug-in protocol, as seen from the training package.

The protocol itself (the hooks, their order, their checkpoint contract) lives in the neutral
module :mod:`promptkit.plugins`, so plug-ins such as :mod:`promptkit.cggm` need not import
:mod:`promptkit.train`; this module re-exports it for code that imports it from here.
"""

from __future__ import annotations

from ..plugins import PLUGIN_METHODS, TrainPlugin, check_plugins

__all__ = ["PLUGIN_METHODS", "TrainPlugin", "check_plugins"]
