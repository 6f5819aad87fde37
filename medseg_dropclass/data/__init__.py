"""Datasets: embedded phantoms, Decathlon/NIfTI/NRRD, Cityscapes, Pascal VOC, checks and class statistics.

Every loader yields the same dict samples, ``{"image": (C, *spatial), "label": (1, *spatial)}``.
"""

from medseg_dropclass.data.decathlon import (
    DecathlonInfo,
    decathlon_datalist,
    decathlon_dataset,
    decathlon_transforms,
    read_dataset_json,
    split_datalist,
)
from medseg_dropclass.data.phantoms import DEFAULT_2D, DEFAULT_3D, PHANTOM_CLASSES, PhantomConfig, make_phantom_dataset
from medseg_dropclass.data.stats import class_table, count_classes, decathlon_class_counts, write_class_statistics
from medseg_dropclass.data.transforms import DatasetError, LookupLabelsd, VerifyPaird
from medseg_dropclass.data.verify import verify_datalist

__all__ = [
    "DatasetError",
    "DecathlonInfo",
    "LookupLabelsd",
    "VerifyPaird",
    "PHANTOM_CLASSES",
    "PhantomConfig",
    "DEFAULT_2D",
    "DEFAULT_3D",
    "make_phantom_dataset",
    "read_dataset_json",
    "decathlon_datalist",
    "decathlon_transforms",
    "decathlon_dataset",
    "split_datalist",
    "verify_datalist",
    "count_classes",
    "decathlon_class_counts",
    "class_table",
    "write_class_statistics",
]
