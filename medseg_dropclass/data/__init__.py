"""Datasets: embedded phantoms, Decathlon/NIfTI/NRRD, Cityscapes, Pascal VOC, checks and class statistics.

Every loader yields the same dict samples, ``{"image": (C, *spatial), "label": (1, *spatial)}``; the
transforms of every stage come from one :class:`Preprocessing` object per dataset family. Also DICOM series in and
DICOM SEG out, a model's training domain and the notices for inputs outside it (``domain``), converters (ACDC,
CamVid) and dataset checks. May import MONAI, the readers (nibabel, ITK, SimpleITK,
pydicom, highdicom) and the floors below (``validation``, ``dropclass``, ``networks``, ``evaluation``); never the
engine, studies or apps.
"""

from medseg_dropclass.data.copy_paste import RandCopyPasted, object_bank
from medseg_dropclass.data.crops import ClassFirstSampler, class_first_sampler
from medseg_dropclass.data.decathlon import (
    DecathlonInfo,
    decathlon_datalist,
    decathlon_dataset,
    decathlon_transforms,
    read_dataset_json,
    split_datalist,
)
from medseg_dropclass.data.files import image_datalist, plan_output_names
from medseg_dropclass.data.phantoms import (
    DEFAULT_2D,
    DEFAULT_3D,
    PHANTOM_CLASSES,
    PhantomConfig,
    ensure_phantoms,
    make_phantom_dataset,
)
from medseg_dropclass.data.preprocessing import DecathlonPreprocessing, NaturalImagePreprocessing, Preprocessing
from medseg_dropclass.data.stats import (
    class_share,
    class_table,
    neighbour_cooccurrence,
    host_weights,
    count_classes,
    decathlon_class_counts,
    write_class_statistics,
)
from medseg_dropclass.data.transforms import (
    CacheDataset,
    Dataset,
    DatasetError,
    LookupLabelsd,
    VerifyImaged,
    VerifyPaird,
)
from medseg_dropclass.data.verify import check_dataset, verify_datalist
from medseg_dropclass.data.writers import SaveLabelPNGd

__all__ = [
    "ClassFirstSampler",
    "class_first_sampler",
    "RandCopyPasted",
    "object_bank",
    "CacheDataset",
    "Dataset",
    "DatasetError",
    "DecathlonInfo",
    "DecathlonPreprocessing",
    "NaturalImagePreprocessing",
    "Preprocessing",
    "LookupLabelsd",
    "VerifyImaged",
    "VerifyPaird",
    "SaveLabelPNGd",
    "PHANTOM_CLASSES",
    "PhantomConfig",
    "DEFAULT_2D",
    "DEFAULT_3D",
    "make_phantom_dataset",
    "ensure_phantoms",
    "image_datalist",
    "plan_output_names",
    "read_dataset_json",
    "decathlon_datalist",
    "decathlon_transforms",
    "decathlon_dataset",
    "split_datalist",
    "verify_datalist",
    "check_dataset",
    "count_classes",
    "class_share",
    "neighbour_cooccurrence",
    "host_weights",
    "decathlon_class_counts",
    "class_table",
    "write_class_statistics",
]
