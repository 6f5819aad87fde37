"""DropClass training for class-imbalanced medical-image segmentation, built on MONAI.

Floors, lowest first (a module imports only from its own floor or lower ones; ``tests/test_layers.py`` checks):
``validation`` (named input errors) < ``dropclass`` (the method) < ``networks`` < ``evaluation`` < ``data`` <
``engine`` (MONAI bundle and ignite glue) < ``study`` (arms x seeds, statistics, reports) < ``apps`` (command line,
predict, export, model card, demo). The bundles (``bundles/``) are configs over all of them.
"""

import logging
import warnings

# With pydicom installed (DICOM SEG output), every MONAI LoadImage instantiates its GPU-only nvImageCodec DICOM
# reader, which warns twice per load that the GPU decoder is missing; pydicom's own decoders are used. Only
# those two messages are silenced.
warnings.filterwarnings(
    "ignore", message="NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register successfully"
)
logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)

from medseg_dropclass.dropclass import (  # noqa: E402  (after the warning filter above, which must come first)
    CappedLinearSchedule,
    ChannelTargetLoss,
    ClassifierHead,
    ConstantSchedule,
    CosineSchedule,
    DropClassHead,
    DropClassLoss,
    DropClassOutput,
    DropClassSampler,
    LinearSchedule,
    MaskedDiceCELoss,
    build_schedule,
    class_importance,
    kept_class_scale,
)
from medseg_dropclass.networks import SegmentationNet, build_network, register_network  # noqa: E402

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
