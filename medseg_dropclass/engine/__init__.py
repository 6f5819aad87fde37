"""MONAI engine glue: the only place that knows ignite and bundles."""

from medseg_dropclass.engine.checks import (
    VerifyImaged,
    bundle_root,
    check_batches,
    check_types,
    ensure_phantoms,
    image_datalist,
    latest_checkpoint,
    require_dir,
    require_file,
)
from medseg_dropclass.engine.controller import DropClassController
from medseg_dropclass.engine.io import SaveLabelPNGd
from medseg_dropclass.engine.handlers import (
    DropClassTensorBoardHandler,
    OverlayImageHandler,
    PerClassSegmentationMetric,
    unwrap,
)

__all__ = [
    "DropClassController",
    "DropClassTensorBoardHandler",
    "OverlayImageHandler",
    "PerClassSegmentationMetric",
    "VerifyImaged",
    "SaveLabelPNGd",
    "bundle_root",
    "check_batches",
    "ensure_phantoms",
    "image_datalist",
    "check_types",
    "latest_checkpoint",
    "require_dir",
    "require_file",
    "unwrap",
]
