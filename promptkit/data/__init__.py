"""Data: the synthetic generator, safe pickle loading, file loaders, size limits, dataset and collate.

``load_data("synthetic")`` or ``load_data(path)`` returns a :class:`DataBundle`; its splits are
:class:`MSADataset` objects and :func:`make_loader` batches them with :func:`collate_msa`.
"""

from .dataset import SPLITS, DataBundle, MSADataset, collate_msa, make_loader
from .limits import DataSizeError
from .loaders import (
    AudioInfWarning,
    DataFormatError,
    load_data,
    load_h5,
    load_mmsa_pickle,
    load_mult_pickle,
)
from .safe_pickle import (
    CorruptPickleError,
    PickleTooLargeError,
    UnsafePickleError,
    safe_load,
)
from .synthetic import make_synthetic_mosi

__all__ = [
    "SPLITS",
    "AudioInfWarning",
    "CorruptPickleError",
    "DataBundle",
    "DataFormatError",
    "DataSizeError",
    "MSADataset",
    "PickleTooLargeError",
    "UnsafePickleError",
    "collate_msa",
    "load_data",
    "load_h5",
    "load_mmsa_pickle",
    "load_mult_pickle",
    "make_loader",
    "make_synthetic_mosi",
    "safe_load",
]
