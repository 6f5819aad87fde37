"""Dictionary transforms that check and remap labels, naming the file when something is wrong."""

from typing import Any, Dict, Hashable, Mapping, Optional, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import CacheDataset as MonaiCacheDataset
from monai.data import Dataset as MonaiDataset
from monai.transforms import Compose, LoadImaged, MapTransform

from medseg_dropclass.validation import check_label_values, error_in_chain

__all__ = [
    "DatasetError", "NamedLoadImaged", "VerifyPaird", "VerifyImaged", "LookupLabelsd", "ZScoreNonzerod", "source_name", "NamedErrorsCompose", "CacheDataset", "Dataset", "require_spatial_dims",
]


class DatasetError(ValueError):
    """A problem with a dataset's files; the message names the file(s) and what is wrong."""


def source_name(data: Mapping[Hashable, object], key: Hashable) -> str:
    """The file a loaded item came from (MONAI keeps it in the MetaTensor's meta dict)."""
    value = data[key]
    meta = getattr(value, "meta", None)
    if isinstance(meta, dict) and meta.get("filename_or_obj"):
        return str(meta["filename_or_obj"])
    return f"<{key}>"


def _spatial_affine(value: object) -> Optional[np.ndarray]:
    affine = getattr(value, "affine", None)
    return None if affine is None else np.asarray(affine, dtype=np.float64)


def check_finite(image: object, image_file: str) -> None:
    """Raise :class:`DatasetError` naming the file and the count of NaN/Inf voxels."""
    values = image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image)
    if not values.is_floating_point():
        return
    flat = values.reshape(-1)
    chunk = 1 << 20  # torch.isfinite builds |x| and three masks: on a 512x512x200 CT 1.7x the image, a chunk at a time 4 MiB
    bad = sum(int(torch.count_nonzero(~torch.isfinite(flat[start:start + chunk]))) for start in range(0, flat.numel(), chunk))
    if bad:
        raise DatasetError(f"{image_file}: image holds {bad} non-finite voxel(s) (NaN/Inf)")


def check_spatial_dims(image: object, spatial_dims: Optional[int], image_file: str) -> None:
    """Raise :class:`DatasetError` when a channel-first image has not ``spatial_dims`` spatial axes."""
    shape = tuple(image.shape[1:])
    if spatial_dims is not None and len(shape) != spatial_dims:
        raise DatasetError(
            f"{image_file}: a {len(shape)}D image of shape {shape}; the model takes {spatial_dims}D images"
            + (" (a single slice stored as a volume: save it as a 2D image)" if spatial_dims == 2 and shape[2:] == (1,) else "")
        )
    if len(shape) == 3 and min(shape) < 2:
        raise DatasetError(
            f"{image_file}: a volume of shape {shape} is too small: every axis of a 3D image needs at least 2 voxels "
            "(a single slice: save it as a 2D image)"
        )


class NamedLoadImaged(LoadImaged):
    """``LoadImaged`` whose read errors name the file: a truncated ``.nii.gz`` raised a bare ``EOFError``, an
    empty file nibabel's error deep inside MONAI's wrapper. Other behaviour is ``LoadImaged``'s."""

    def __call__(self, data, reader=None):
        try:
            return super().__call__(data, reader)
        except DatasetError:
            raise
        except Exception as error:
            for key in self.key_iterator(dict(data)):  # which file: retry them one by one (the failure path only)
                path = data[key]
                if not isinstance(path, (str, bytes)) and not hasattr(path, "__fspath__"):
                    continue
                try:
                    self._loader(path, reader)
                except Exception as own:  # noqa: BLE001  (any reader error: name the file and keep the cause)
                    raise DatasetError(
                        f"{path}: cannot be read as an image ({type(own).__name__}: {own}); is it truncated, empty or of another format?"
                    ) from error
            raise


class VerifyPaird(MapTransform):
    """Check a loaded image/label pair (channel-first) before anything resamples it.

    Checks: image channel count, finite image values, one label channel, equal spatial shapes, equal geometry (affine
    within ``affine_tolerance`` mm), integer label values, and every label value a class in
    ``0..num_classes-1`` or ``ignore_index``. Nothing is clipped or skipped: a problem raises
    :class:`DatasetError` naming the file.

    Args:
        image_key, label_key: keys of the pair.
        num_classes: classes ``K``.
        image_channels: expected image channels (``None``: any).
        ignore_index: the one label value allowed outside the classes (``None``: none).
        affine_tolerance: largest allowed absolute difference between the two affines.
        spatial_dims: expected spatial axes of the image (``None``: any).
    """

    def __init__(
        self,
        image_key: str = "image",
        label_key: str = "label",
        num_classes: int = 2,
        image_channels: Optional[int] = None,
        ignore_index: Optional[int] = None,
        affine_tolerance: float = 1e-3,
        spatial_dims: Optional[int] = None,
    ) -> None:
        super().__init__([image_key, label_key])
        self.spatial_dims = spatial_dims
        self.image_key, self.label_key = image_key, label_key
        self.num_classes = num_classes
        self.image_channels = image_channels
        self.ignore_index = ignore_index
        self.affine_tolerance = affine_tolerance

    def __call__(self, data: Mapping[Hashable, object]) -> Dict[Hashable, object]:
        d = dict(data)
        image, label = d[self.image_key], d[self.label_key]
        image_file, label_file = source_name(d, self.image_key), source_name(d, self.label_key)
        if self.image_channels is not None and image.shape[0] != self.image_channels:
            raise DatasetError(
                f"{image_file}: image has {image.shape[0]} channel(s), expected {self.image_channels}"
            )
        check_spatial_dims(image, self.spatial_dims, image_file)
        check_finite(image, image_file)
        if label.shape[0] != 1:
            raise DatasetError(f"{label_file}: label has {label.shape[0]} channels, expected 1 (a class-index map)")
        if tuple(image.shape[1:]) != tuple(label.shape[1:]):
            raise DatasetError(
                f"{label_file}: label shape {tuple(label.shape[1:])} differs from image shape "
                f"{tuple(image.shape[1:])} of {image_file}"
            )
        image_affine, label_affine = _spatial_affine(image), _spatial_affine(label)
        if image_affine is not None and label_affine is not None:
            if image_affine.shape != label_affine.shape or not np.allclose(
                image_affine, label_affine, atol=self.affine_tolerance, rtol=0
            ):
                raise DatasetError(
                    f"{label_file}: label geometry (affine) differs from image {image_file}:\n"
                    f"label affine\n{label_affine}\nimage affine\n{image_affine}"
                )
        self.check_values(torch.as_tensor(label), label_file)
        return d

    def check_values(self, label: torch.Tensor, label_file: str) -> None:
        if label.is_floating_point() and not torch.equal(label, label.round()):
            raise DatasetError(f"{label_file}: label holds non-integer values; expected class indices")
        check_label_values(torch.unique(label).long(), self.num_classes, self.ignore_index, label_file, DatasetError)


class VerifyImaged(MapTransform):
    """Check an image's channel count, spatial axes and values (inference has no label to pair with); names the file."""

    def __init__(self, keys: KeysCollection, channels: Optional[int], spatial_dims: Optional[int] = None) -> None:
        super().__init__(keys)
        self.channels, self.spatial_dims = channels, spatial_dims

    def __call__(self, data: Mapping[Hashable, object]) -> Dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            if self.channels is not None and d[key].shape[0] != self.channels:
                raise DatasetError(f"{source_name(d, key)}: image has {d[key].shape[0]} channel(s), the model expects {self.channels}")
            check_spatial_dims(d[key], self.spatial_dims, source_name(d, key))
            check_finite(d[key], source_name(d, key))
        return d


def _masked_values(values: torch.Tensor, mask: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """``values[mask]`` of flat tensors, gathered a chunk at a time into one tensor: the same values in the same order
    without the whole-volume int64 index tensor that boolean indexing builds (8 bytes a voxel)."""
    out = torch.empty(int(torch.count_nonzero(mask)), dtype=values.dtype)  # (a bool .sum() copies the mask as int64)
    done = 0
    for start in range(0, values.numel(), chunk):
        part = torch.masked_select(values[start:start + chunk], mask[start:start + chunk])
        out[done:done + part.numel()] = part
        done += part.numel()
    return out


class ZScoreNonzerod(MapTransform):
    """Per channel, ``(x - mean) / std`` over the non-zero voxels, in place: bitwise what MONAI's
    ``NormalizeIntensityd(nonzero=True, channel_wise=True)`` computes (the same ``torch.mean`` / ``torch.std`` of the
    same masked values, the same float32 arithmetic), with about half its peak memory (MONAI keeps the masked copy, its
    difference and its quotient at once: about 4 image copies on a 512x512x200 CT). An all-zero channel is left as is;
    a zero std divides by 1."""

    def __call__(self, data: Mapping[Hashable, object]) -> Dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            if image.dtype != torch.float32:  # MONAI's output is float32 whatever the input
                image = image.to(torch.float32)
            pixels = image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image)
            if not pixels.is_contiguous():
                image = image.contiguous()
                pixels = image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image)
            for channel in pixels.reshape(pixels.shape[0], -1):  # flat views (boolean indexing would build int64 indices)
                mask = channel != 0
                if not bool(mask.any()):
                    continue
                values = _masked_values(channel, mask)
                mean = torch.mean(values).item()
                std = torch.std(values, unbiased=False).item() or 1.0
                del values
                channel.sub_(mean).div_(std).masked_fill_(~mask, 0.0)  # the same float32 operations on the non-zero voxels
                del mask
            d[key] = image
        return d


class LookupLabelsd(MapTransform):
    """Map label values through a lookup table (e.g. Cityscapes label ids -> train ids).

    Args:
        keys: label keys.
        mapping: ``{source value: target value}``; every value not in it maps to ``default``.
        default: target of the unlisted values (the ignore index, typically 255).
    """

    def __init__(self, keys: KeysCollection, mapping: Mapping[int, int], default: int = 255) -> None:
        super().__init__(keys)
        size = max(256, max(mapping) + 1)
        table = torch.full((size,), default, dtype=torch.long)
        for source, target in mapping.items():
            if source < 0:
                continue  # e.g. Cityscapes' license plate (-1) never appears in a PNG
            table[source] = target
        self.table = table

    def __call__(self, data: Mapping[Hashable, object]) -> Dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            values = torch.as_tensor(label).long()
            if values.numel() and (values.min() < 0 or values.max() >= len(self.table)):
                raise DatasetError(
                    f"{source_name(d, key)}: label value {int(values.max())} outside the lookup table 0..{len(self.table) - 1}"
                )
            mapped = self.table[values].to(torch.float32)
            if hasattr(label, "meta"):
                mapped = type(label)(mapped, meta=label.meta)  # keep the MetaTensor's geometry
            d[key] = mapped
        return d


def verify_keys(mapping: Mapping[str, object], required: Sequence[str], path: str) -> None:
    """Raise :class:`DatasetError` naming ``path`` and every missing key."""
    missing = [key for key in required if key not in mapping]
    if missing:
        raise DatasetError(f"{path}: missing key(s) {missing}; required: {list(required)}")


def require_spatial_dims(spatial_dims: Optional[int], dataset_json: Any) -> int:
    """``spatial_dims`` (2 or 3) from a ``dataset.json``'s ``tensorImageSize`` or an override, else a
    :class:`DatasetError` saying what to pass."""
    if spatial_dims in (1, 2, 3):
        return int(spatial_dims)
    raise DatasetError(
        f"{dataset_json}: no 'tensorImageSize' (\"2D\" or \"3D\"), so the image dimensions are unknown; add it to the file "
        f"or pass --spatial_dims 2 (or 3)" if spatial_dims is None else f"{dataset_json}: spatial_dims={spatial_dims!r}; use 2 or 3"
    )


def find_dataset_error(error: BaseException) -> Optional[DatasetError]:
    """The :class:`DatasetError` in an exception's cause chain (MONAI wraps transform errors)."""
    return error_in_chain(error, DatasetError)


class NamedErrorsCompose(Compose):
    """``Compose`` whose :class:`DatasetError` surfaces as itself, not inside MONAI's
    ``RuntimeError("applying transform ...")`` wrapper that hides the file name.

    ``CacheDataset`` runs its caching pass through ``Compose.__call__``, so this covers it too.
    """

    def __call__(self, input_, start=0, end=None, threading=False, lazy=None):
        return _with_named_errors(super().__call__, input_, start, end, threading, lazy)


def _with_named_errors(call, *args):
    try:
        return call(*args)
    except Exception as error:
        named = find_dataset_error(error)
        if named is None or named is error:
            raise
        raise DatasetError(str(named)) from error


class NamedErrors:
    """Dataset mixin: ``dataset[i]`` raises the transform's :class:`DatasetError`, not MONAI's wrapper."""

    def __getitem__(self, index):
        return _with_named_errors(super().__getitem__, index)


class Dataset(NamedErrors, MonaiDataset):
    """``monai.data.Dataset`` whose data errors name the file."""


class CacheDataset(NamedErrors, MonaiCacheDataset):
    """``monai.data.CacheDataset`` whose data errors name the file (give it a :class:`NamedErrorsCompose`).

    The cache is filled in the calling thread when ``num_workers`` is 0 or 1 (MONAI uses a thread pool even
    then), and with several workers every worker has finished before an error propagates: a case that fails
    while another thread is inside ITK's reader used to end the process with ``terminate called without an
    active exception`` (exit 134) right after the error was printed.
    """

    def __init__(self, data, transform, **kwargs) -> None:
        if isinstance(transform, Compose) and not isinstance(transform, NamedErrorsCompose):
            transform = NamedErrorsCompose(transform.transforms)
        super().__init__(data, transform, **kwargs)

    def _transform(self, index: int):
        """An index past the cases is a class-first request (:class:`~medseg_dropclass.data.crops.ClassFirstSampler`):
        that case, its crops centred on the requested class."""
        if index < len(self.data):
            return super()._transform(index)
        from medseg_dropclass.data.crops import RandBalancedCropd

        case, request = index % len(self.data), index // len(self.data) - 1
        crops = [t for t in getattr(self.transform, "transforms", []) if isinstance(t, RandBalancedCropd)]
        for crop in crops:
            crop.requested_class = request
        try:
            return super()._transform(case)
        finally:
            for crop in crops:
                crop.requested_class = None

    def _fill_cache(self, indices=None) -> list:
        from concurrent.futures import ThreadPoolExecutor

        from tqdm import tqdm

        if self.cache_num <= 0:
            return []
        indices = list(range(self.cache_num)) if indices is None else list(indices)
        progress = tqdm(total=len(indices), desc="Loading dataset", disable=not self.progress)
        try:
            if (self.num_workers or 1) <= 1:
                cached = []
                for index in indices:
                    cached.append(self._load_cache_item(index))
                    progress.update(1)
                return cached
            executor = ThreadPoolExecutor(self.num_workers)
            try:
                futures = [executor.submit(self._load_cache_item, index) for index in indices]
                cached = []
                for future in futures:
                    cached.append(future.result())
                    progress.update(1)
                return cached
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
            finally:
                executor.shutdown(wait=True)  # no thread is left inside a reader when the error reaches the caller
        finally:
            progress.close()
