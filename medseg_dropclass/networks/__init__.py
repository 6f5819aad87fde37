"""Networks that end at a feature map (UNet, SegResNet, DeepLabV3(+), HRNetV2), wired to a DropClass or plain head by
``build_network``. May import torch, MONAI, ``medseg_dropclass.validation`` and ``medseg_dropclass.dropclass`` (the
heads); never data, engine or studies."""

from medseg_dropclass.networks import deeplab, hrnet, segresnet, unet  # noqa: F401  (register the builders)
from medseg_dropclass.networks.registry import NETWORKS, FeatureNetwork, build_network, register_network
from medseg_dropclass.networks.segmentation_net import ClassifierHead, SegmentationNet

__all__ = ["NETWORKS", "FeatureNetwork", "build_network", "register_network", "ClassifierHead", "SegmentationNet"]
