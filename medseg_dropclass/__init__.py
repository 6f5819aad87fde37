"""DropClass training for class-imbalanced medical-image segmentation, built on MONAI."""

import logging
import warnings

# With pydicom installed (DICOM SEG output), every MONAI LoadImage instantiates its GPU-only nvImageCodec DICOM
# reader, which warns twice per load that the GPU decoder is missing; pydicom's own decoders are used. Only
# those two messages are silenced.
warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register successfully")
logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)

from medseg_dropclass.dropclass import DropClassHead, DropClassOutput, class_importance, kept_class_scale
from medseg_dropclass.losses import ChannelTargetLoss, MaskedDiceCELoss, DropClassLoss
from medseg_dropclass.networks import ClassifierHead, SegmentationNet, build_network, register_network
from medseg_dropclass.sampling import DropClassSampler
from medseg_dropclass.schedules import (
    CappedLinearSchedule,
    ConstantSchedule,
    CosineSchedule,
    LinearSchedule,
    build_schedule,
)

__version__ = "0.1.0"

__all__ = [
    "DropClassHead",
    "DropClassOutput",
    "class_importance",
    "kept_class_scale",
    "DropClassLoss",
    "MaskedDiceCELoss",
    "ChannelTargetLoss",
    "DropClassSampler",
    "LinearSchedule",
    "CappedLinearSchedule",
    "CosineSchedule",
    "ConstantSchedule",
    "build_schedule",
    "build_network",
    "register_network",
    "SegmentationNet",
    "ClassifierHead",
]
