"""One preprocessing definition per dataset family, used by training, validation, evaluation and inference.

A bundle config builds one :class:`DecathlonPreprocessing` (NIfTI/NRRD/MHA volumes) or
:class:`NaturalImagePreprocessing` (PNG/JPEG photos) and asks it for the transforms of each stage:

- ``"train"``: image and label resampled together, random crops and flips;
- ``"evaluate"``: image preprocessed as at inference, the label left on its original grid (the
  prediction is mapped back to that grid by :meth:`Preprocessing.postprocessing`, so a case is scored
  where its reference lives, as nnU-Net does);
- ``"inference"``: the image alone;
- ``"label"``: the label file alone, as stored (class statistics).

The same object's :meth:`Preprocessing.postprocessing` inverts the geometric steps, so the
evaluator's prediction for a case is the inference prediction for that case (tested).
"""

from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from monai.transforms import (
    Activationsd,
    AsDiscreted,
    ClassesToIndicesd,
    CopyItemsd,
    DeleteItemsd,
    EnsureTyped,
    Invertd,
    MapTransform,
    NormalizeIntensityd,
    Orientationd,
    RandFlipd,
    RandSpatialCropd,
    RandZoomd,
    SaveImaged,
    ScaleIntensityRanged,
    SqueezeDimd,
    Spacingd,
    SpatialPadd,
)

from medseg_dropclass.data.crops import RandBalancedCropd
from medseg_dropclass.data.files import output_stem
from medseg_dropclass.data.transforms import LookupLabelsd, NamedErrorsCompose, NamedLoadImaged, VerifyImaged, VerifyPaird, ZScoreNonzerod
from medseg_dropclass.data.writers import SaveLabelPNGd

__all__ = ["STAGES", "Preprocessing", "DecathlonPreprocessing", "NaturalImagePreprocessing", "IMAGENET_MEAN", "IMAGENET_STD"]

STAGES = ("train", "evaluate", "inference", "label")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AXIS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


class Preprocessing:
    """Base class: memoised per-stage transforms (``Invertd`` needs the very instance that ran) and postprocessing."""

    suffixes: Tuple[str, ...] = ()

    def __init__(self) -> None:
        self._built: Dict[str, NamedErrorsCompose] = {}
        self.copy_paste: Optional[Mapping] = None
        self.copy_paste_cases: Sequence[Mapping] = ()

    def set_copy_paste(self, options: Optional[Mapping], cases: Sequence[Mapping]) -> None:
        """Rare-object copy-paste in training (:class:`~medseg_dropclass.data.copy_paste.RandCopyPasted`):
        ``options`` are its arguments plus ``classes`` (default: those under 1% of ``cases``' labels) and
        ``min_voxels``; the bank is built from ``cases`` at the first training sample. ``None``: off."""
        if options is not None:
            allowed = {"prob", "max_objects", "avoid_host", "blend_sigma", "attempts", "classes", "min_voxels"}
            unknown = sorted(set(options) - allowed)
            if unknown:
                raise ValueError(f"copy_paste options {unknown} unknown; known: {sorted(allowed)}")
        self.copy_paste, self.copy_paste_cases = (dict(options) if options else None), list(cases)
        self._built.pop("train", None)  # built again with (or without) the step

    def train_transforms(self, copy_paste: Optional[Mapping] = None, cases: Sequence[Mapping] = ()) -> NamedErrorsCompose:
        """The training transforms, with rare-object copy-paste when ``copy_paste`` gives its options
        (:meth:`set_copy_paste`; the bundles' ``copy_paste`` key, ``cases`` their training datalist)."""
        if copy_paste != self.copy_paste or (copy_paste and list(cases) != self.copy_paste_cases):
            self.set_copy_paste(copy_paste, cases)
        return self.transforms("train")

    def _copy_paste_step(self, deterministic: List[MapTransform], indices_key: Optional[str]) -> List[MapTransform]:
        """The copy-paste step after ``deterministic`` (the steps that load and normalise a case), or nothing."""
        if not self.copy_paste:
            return []
        from monai.transforms import Compose

        from medseg_dropclass.data.copy_paste import RandCopyPasted, object_bank

        options = dict(self.copy_paste)
        classes, min_voxels = options.pop("classes", None), int(options.pop("min_voxels", 1))
        load, cases = Compose(list(deterministic)), self.copy_paste_cases
        num_classes, ignore_index = self.num_classes, getattr(self, "ignore_index", None)
        ignore_index = 255 if ignore_index is None else ignore_index

        def build_bank():
            return object_bank(cases, load, classes, min_voxels, num_classes=num_classes, ignore_index=ignore_index)

        return [
            RandCopyPasted(("image", "label"), build_bank=build_bank, indices_key=indices_key, num_classes=num_classes, **options)
        ]

    def transforms(self, stage: str) -> NamedErrorsCompose:
        """The transforms of ``stage`` (one of :data:`STAGES`); the same object on every call."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
        if stage not in self._built:
            self._built[stage] = NamedErrorsCompose(self.build(stage))
        return self._built[stage]

    def build(self, stage: str) -> List[MapTransform]:
        raise NotImplementedError

    def inverse(self, stage: str) -> List[MapTransform]:
        """Steps mapping ``pred`` (scores) back to the input's grid; none where geometry is untouched."""
        return []

    output_extension = ".nii.gz"

    def writer(self, output_dir: str, output_names: Optional[Mapping[str, str]] = None) -> MapTransform:
        raise NotImplementedError

    def inverse_class_map(self, stage: str) -> List[MapTransform]:
        """Steps mapping a class map ``pred`` (``(1, *spatial)``) back to the input's grid (nearest neighbour)."""
        return []

    def postprocessing(
        self, stage: str = "evaluate", output_dir: Optional[str] = None, output_names: Optional[Mapping[str, str]] = None,
        class_map: bool = False,
    ) -> NamedErrorsCompose:
        """Scores -> class map on the input's own grid (``pred``: ``(1, *spatial)``); written when ``output_dir`` is
        given, to ``<output_names[input]>_seg<extension>`` (:func:`~medseg_dropclass.data.plan_output_names`).
        ``class_map``: ``pred`` is already a class map (a large volume's slab-by-slab inference), mapped back by
        nearest neighbour instead of resampling the scores."""
        steps = self.inverse_class_map(stage) if class_map else self.inverse(stage) + [AsDiscreted(keys="pred", argmax=True)]
        if output_dir is not None:
            steps.append(self.writer(output_dir, output_names))
        return NamedErrorsCompose(steps)


class PlannedNames:
    """MONAI writer ``output_name_formatter``: the output stem planned for each input file (its own stem otherwise)."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self.names = dict(names)

    def __call__(self, meta: Mapping, saver: object = None) -> dict:
        source = str(meta.get("filename_or_obj", ""))
        # MONAI drops what follows a subject's last dot as an extension ("1.2.3.4" -> "1.2.3"): give it one to drop
        return {"subject": self.names.get(source, output_stem(source)) + ".stem", "idx": None}


class DecathlonPreprocessing(Preprocessing):
    """Medical volumes (Decathlon layout, NIfTI/NRRD/MHA) through MONAI's readers.

    Args:
        spatial_dims: 2 or 3.
        num_classes: classes ``K`` (labels are checked against ``0..K-1``).
        in_channels: expected image channels (``None``: any).
        pixdim: target spacing in mm (``None``: keep the file's spacing).
        intensity: ``"zscore"`` (per image and channel, over the non-zero voxels) or a CT window
            ``(low, high)`` in HU scaled to ``[0, 1]``.
        crop_size: training crop (``None``: whole images).
        foreground_share: share of the crops centred on a foreground class drawn uniformly among the
            classes present in the case (nnU-Net's oversampling, default 1/3); the rest are random.
        num_crops: crops per loaded case (training).
        reader: ``"ITKReader"``, ``"NibabelReader"`` or ``None`` (MONAI picks by file suffix).
        ignore_index: a label value allowed besides the classes (``None``: none).
        orientation: reorient to RAS; ``False`` keeps the stored axes (e.g. cine MR stacks, whose oblique
            affines could move the slice axis).
        train_on_slices: 3D volumes, 2D training: ``crop_size`` ends with 1 and the training crops lose that
            axis (``(C, H, W)``); flips are in-plane. Evaluation and inference stay 3D (a ``SliceInferer``).
    """

    suffixes = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

    def __init__(
        self,
        spatial_dims: int,
        num_classes: int,
        in_channels: Optional[int] = 1,
        pixdim: Optional[Sequence[float]] = None,
        intensity: Union[str, Sequence[float]] = "zscore",
        crop_size: Optional[Sequence[int]] = None,
        foreground_share: float = 1.0 / 3.0,
        num_crops: int = 1,
        reader: Optional[str] = None,
        ignore_index: Optional[int] = None,
        orientation: bool = True,
        train_on_slices: bool = False,
    ) -> None:
        super().__init__()
        if train_on_slices and (spatial_dims != 3 or crop_size is None or int(crop_size[-1]) != 1):
            raise ValueError(f"train_on_slices needs 3D volumes and a crop_size ending with 1, got spatial_dims={spatial_dims}, crop_size={crop_size}")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims={spatial_dims}: the Decathlon pipeline handles 2D and 3D images")
        for name, value in (("pixdim", pixdim), ("crop_size", crop_size)):
            if value is not None and len(value) != spatial_dims:
                raise ValueError(f"{name} {tuple(value)} needs {spatial_dims} values (one per spatial axis)")
        if not (intensity == "zscore" or (isinstance(intensity, (tuple, list)) and len(intensity) == 2)):
            raise ValueError(f"intensity={intensity!r} is not 'zscore' or a (low, high) window")
        self.spatial_dims, self.num_classes, self.in_channels = spatial_dims, num_classes, in_channels
        self.pixdim = tuple(pixdim) if pixdim is not None else None
        self.intensity = intensity
        self.crop_size = tuple(crop_size) if crop_size is not None else None
        self.foreground_share = float(foreground_share)
        self.num_crops, self.reader, self.ignore_index = num_crops, reader, ignore_index
        self.orientation, self.train_on_slices = orientation, train_on_slices

    def build(self, stage: str) -> List[MapTransform]:
        if stage == "label":
            return [NamedLoadImaged(keys="label", reader=self.reader, ensure_channel_first=True, image_only=True)]
        loaded = ["image"] if stage == "inference" else ["image", "label"]
        moved = ["image", "label"] if stage == "train" else ["image"]  # evaluate: the reference stays on its grid
        steps: List[MapTransform] = [NamedLoadImaged(keys=loaded, reader=self.reader, ensure_channel_first=True, image_only=True)]
        if stage == "inference":
            steps.append(VerifyImaged("image", channels=self.in_channels, spatial_dims=self.spatial_dims))
        else:
            steps.append(
                VerifyPaird(
                    "image", "label", num_classes=self.num_classes, image_channels=self.in_channels, ignore_index=self.ignore_index,
                    spatial_dims=self.spatial_dims,
                )
            )
        if self.orientation:
            steps.append(Orientationd(keys=moved, axcodes="RAS"[: self.spatial_dims], labels=AXIS_LABELS))
        if self.pixdim is not None:
            steps.append(Spacingd(keys=moved, pixdim=self.pixdim, mode=("bilinear", "nearest")[: len(moved)]))
        if self.intensity == "zscore":
            steps.append(ZScoreNonzerod(keys="image"))  # NormalizeIntensityd(nonzero, channel_wise), bitwise, half the memory
        else:
            low, high = self.intensity
            steps.append(ScaleIntensityRanged(keys="image", a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True))
        if stage == "train":
            loaded_and_normalised = list(steps)
            if self.crop_size is not None:
                steps.append(SpatialPadd(keys=moved, spatial_size=self.crop_size))
                # where each class is: computed once, in the cached (deterministic) part of the pipeline
                steps.append(ClassesToIndicesd(keys="label", num_classes=self.num_classes, indices_postfix="_class_indices"))
                steps += self._copy_paste_step(loaded_and_normalised, "label_class_indices")  # updates the indices
                steps.append(
                    RandBalancedCropd(
                        keys=moved, label_key="label", spatial_size=self.crop_size, num_classes=self.num_classes,
                        indices_key="label_class_indices", foreground_share=self.foreground_share, num_samples=self.num_crops,
                    )
                )
                steps.append(DeleteItemsd(keys="label_class_indices"))
            else:
                steps += self._copy_paste_step(loaded_and_normalised, None)
            in_plane = self.spatial_dims - 1 if self.train_on_slices else self.spatial_dims
            steps += [RandFlipd(keys=moved, prob=0.5, spatial_axis=axis) for axis in range(in_plane)]
            if self.train_on_slices:
                steps.append(SqueezeDimd(keys=moved, dim=self.spatial_dims))  # (C, H, W, 1) -> (C, H, W)
        steps.append(EnsureTyped(keys=loaded, track_meta=stage != "train"))
        return steps

    def inverse(self, stage: str) -> List[MapTransform]:
        # probabilities are resampled (linear) back to the input grid, then argmaxed
        steps: List[MapTransform] = [
            Activationsd(keys="pred", softmax=True),
            Invertd(keys="pred", transform=self.transforms(stage), orig_keys="image", nearest_interp=False, to_tensor=True),
        ]
        if stage == "evaluate":  # the image on the reference's grid too, for overlays
            steps += [
                CopyItemsd(keys="image", names="image_display"),
                Invertd(keys="image_display", transform=self.transforms(stage), orig_keys="image", to_tensor=True),
            ]
        return steps

    def inverse_class_map(self, stage: str) -> List[MapTransform]:
        return [Invertd(keys="pred", transform=self.transforms(stage), orig_keys="image", nearest_interp=True, to_tensor=True)]

    def writer(self, output_dir: str, output_names: Optional[Mapping[str, str]] = None) -> MapTransform:
        import numpy

        return SaveImaged(
            keys="pred", output_dir=output_dir, output_postfix="seg", output_dtype=numpy.uint8, resample=False,
            separate_folder=False, print_log=False, output_name_formatter=PlannedNames(output_names or {}),
        )


class NaturalImagePreprocessing(Preprocessing):
    """RGB photos and index label maps (Cityscapes, Pascal VOC): PNG/JPEG, ``ignore_index`` pixels kept.

    ``PILReader(reverse_indexing=False)`` keeps images as ``(H, W)``; palette PNGs are read as their
    indices, never converted to RGB.

    Args:
        num_classes: classes ``K``.
        crop_size: training crop ``(H, W)`` (``None``: whole images).
        label_mapping: ``{file value: class}`` (e.g. Cityscapes label ids -> train ids); unlisted values
            become ``ignore_index``.
        ignore_index: label value left out of losses and metrics.
        mean, std: per-channel normalisation of ``[0, 1]`` intensities (ImageNet's by default).
        scale_range: ``(low, high)``: training images and labels are first rescaled by a random factor in that
            range (bilinear / nearest), the usual random-scale augmentation of street scenes.
        foreground_share: ``None``: random crops (the paper); a share: that share of the crops centred on a
            class other than 0 drawn uniformly among those present (:class:`RandBalancedCropd`).
    """

    suffixes = (".png", ".jpg", ".jpeg")

    def __init__(
        self,
        num_classes: int,
        crop_size: Optional[Sequence[int]] = None,
        label_mapping: Optional[Mapping[int, int]] = None,
        ignore_index: int = 255,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        scale_range: Optional[Sequence[float]] = None,
        foreground_share: Optional[float] = None,
    ) -> None:
        super().__init__()
        if scale_range is not None and (len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]):
            raise ValueError(f"scale_range={scale_range!r}: expected (low, high) with 0 < low <= high")
        if foreground_share is not None and crop_size is None:
            raise ValueError("foreground_share needs a crop_size (it chooses where the crops are centred)")
        self.scale_range = tuple(scale_range) if scale_range is not None else None
        self.foreground_share = foreground_share
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.crop_size = tuple(crop_size) if crop_size is not None else None
        self.label_mapping, self.mean, self.std = label_mapping, tuple(mean), tuple(std)

    def _load(self, keys: Sequence[str]) -> List[MapTransform]:
        steps: List[MapTransform] = [NamedLoadImaged(keys=keys, reader="PILReader", reverse_indexing=False, ensure_channel_first=True, image_only=True)]
        if "label" in keys and self.label_mapping is not None:
            steps.append(LookupLabelsd("label", self.label_mapping, default=self.ignore_index))
        return steps

    def build(self, stage: str) -> List[MapTransform]:
        if stage == "label":
            return self._load(["label"])
        keys = ["image"] if stage == "inference" else ["image", "label"]
        steps = self._load(keys)
        if stage == "inference":
            steps.append(VerifyImaged("image", channels=3))
        else:
            steps.append(VerifyPaird("image", "label", num_classes=self.num_classes, image_channels=3, ignore_index=self.ignore_index))
        steps += [
            ScaleIntensityRanged(keys="image", a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0),
            NormalizeIntensityd(keys="image", subtrahend=self.mean, divisor=self.std, channel_wise=True),
        ]
        if stage == "train":
            steps += self._copy_paste_step(list(steps), None)
            if self.scale_range is not None:
                low, high = self.scale_range
                steps.append(RandZoomd(keys=keys, prob=1.0, min_zoom=low, max_zoom=high, mode=("bilinear", "nearest"), keep_size=False))
            if self.crop_size is not None:
                steps += [
                    SpatialPadd(keys="image", spatial_size=self.crop_size, value=0.0),
                    SpatialPadd(keys="label", spatial_size=self.crop_size, value=self.ignore_index),
                ]
                if self.foreground_share is None:
                    steps.append(RandSpatialCropd(keys=keys, roi_size=self.crop_size, random_size=False))
                else:
                    steps += [
                        ClassesToIndicesd(keys="label", num_classes=self.num_classes, indices_postfix="_class_indices"),
                        RandBalancedCropd(
                            keys=keys, label_key="label", spatial_size=self.crop_size, num_classes=self.num_classes,
                            indices_key="label_class_indices", foreground_share=self.foreground_share,
                        ),
                        DeleteItemsd(keys="label_class_indices"),
                    ]
            steps.append(RandFlipd(keys=keys, prob=0.5, spatial_axis=1))
        steps.append(EnsureTyped(keys=keys, track_meta=stage != "train"))
        return steps

    output_extension = ".png"

    def writer(self, output_dir: str, output_names: Optional[Mapping[str, str]] = None) -> MapTransform:
        return SaveLabelPNGd(keys="pred", output_dir=output_dir, output_names=output_names)
