"""Datasets on disk (one format for every dataset) and their PyTorch views.

`weakhand.data.format` (NumPy only) is imported eagerly; the torch parts
(`HandDataset`, `AugmentConfig`, `MixedBatchSampler`, `make_mixed_loader`, the notebooks'
`loaders`) are imported on first access so that `import weakhand.data` does not pull in torch.
"""
from __future__ import annotations

from .format import (ARRAY_SPECS, DEFAULT_DEPTH_SCALE_MM, IMAGE_ARRAYS, MANIFEST, OPTIONAL_ARRAYS,
                     REQUIRED_ARRAYS, SCHEMA, SCHEMA_VERSION, DatasetError, DatasetWriter, HandData,
                     data_view,
                     dataset_summary, load_dataset, write_dataset)

_TORCH_NAMES = ("HandDataset", "AugmentConfig", "MixedBatchSampler", "make_mixed_loader",
                "set_loader_epoch", "colour_jitter", "to_device",
                "DEFAULT_FIELDS", "TRAIN_AUGMENT", "EVAL_BATCH_SIZE", "Loaders", "loaders",
                "split_dataset", "eval_loader")

__all__ = ["ARRAY_SPECS", "DEFAULT_DEPTH_SCALE_MM", "IMAGE_ARRAYS", "MANIFEST", "OPTIONAL_ARRAYS",
           "REQUIRED_ARRAYS", "SCHEMA", "SCHEMA_VERSION", "DatasetError", "DatasetWriter",
           "HandData", "data_view", "dataset_summary", "load_dataset", "write_dataset", *_TORCH_NAMES]


def __getattr__(name: str):
    if name in _TORCH_NAMES:
        from . import torch_data
        return getattr(torch_data, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
