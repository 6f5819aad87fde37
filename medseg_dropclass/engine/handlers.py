"""Ignite handlers and the evaluation metric of the MONAI bundles."""

import json
import math
import pathlib
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from ignite.engine import Events
from ignite.metrics import Metric

from medseg_dropclass.dropclass.loss import DropClassLoss
from medseg_dropclass.engine.controller import DropClassController
from medseg_dropclass.evaluation.metrics import confusion_matrix, summarize_cases
from medseg_dropclass.evaluation.similarity import class_weight_similarity, similarity_figure

__all__ = [
    "DropClassTensorBoardHandler",
    "SegmentationEvaluation",
    "OverlayImageHandler",
    "StopOnNonFiniteLoss",
    "NonFiniteLossError",
    "unwrap",
]


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The module inside ``DistributedDataParallel`` / ``DataParallel``."""
    return getattr(network, "module", network)


def _figure_to_image(figure) -> np.ndarray:
    figure.canvas.draw()
    image = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    return image.transpose(2, 0, 1)


class DropClassTensorBoardHandler:
    """Training curves of DropClass in TensorBoard.

    Every ``interval`` iterations: the total loss and its three terms, and ``p``. Every epoch: a
    histogram of the dropped classes (value ``K`` = nothing dropped). Every ``similarity_every``
    epochs: the cosine-similarity matrix of the classifier's class weight vectors, as an image.

    Args:
        summary_writer: a ``torch.utils.tensorboard.SummaryWriter`` (shared with MONAI's handlers).
        controller, loss, network: the trainer's DropClass controller, loss and network.
        class_names: names for the similarity image.
    """

    def __init__(
        self,
        summary_writer: Any,
        controller: DropClassController,
        loss: DropClassLoss,
        network: torch.nn.Module,
        class_names: Optional[Sequence[str]] = None,
        interval: int = 1,
        similarity_every: int = 5,
    ) -> None:
        self.writer = summary_writer
        self.controller, self.loss, self.network = controller, loss, network
        self.class_names = list(class_names) if class_names is not None else None
        self.interval = max(int(interval), 1)
        self.similarity_every = max(int(similarity_every), 1)

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self.iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)

    def iteration_completed(self, engine: Any) -> None:
        step = engine.state.iteration
        for name in ("total", "main", "dropped", "suppression"):
            value = self.loss.last_terms.get(name)
            if value is not None:
                self.writer.add_scalar(f"train/loss_{name}", float(value), step)
        self.writer.add_scalar("dropclass/progress", float(self.controller.progress), step)

    def epoch_completed(self, engine: Any) -> None:
        epoch = engine.state.epoch
        counts = self.controller.drop_counts
        if int(counts.sum()) > 0:
            values = torch.repeat_interleave(torch.arange(len(counts)), counts).float()
            self.writer.add_histogram("dropclass/dropped_class", values, epoch, bins=np.arange(len(counts) + 1) - 0.5)
        if epoch % self.similarity_every == 0 or epoch == engine.state.max_epochs:
            self.writer.add_image("dropclass/classifier_similarity", self.similarity_image(), epoch)
        self.writer.flush()

    def similarity_image(self) -> np.ndarray:
        import matplotlib.pyplot as plt

        similarity = class_weight_similarity(unwrap(self.network).head.classifier.weight)
        names = self.class_names or [str(i) for i in range(similarity.shape[0])]
        figure = similarity_figure(similarity, names, annotate=False)
        image = _figure_to_image(figure)
        plt.close(figure)
        return image


class SegmentationEvaluation(Metric):
    """The project's one evaluation: per case, nnU-Net semantics, on whatever the evaluator's inferer produced.

    Every case gets its own confusion matrix (``ignore_index`` excluded); :func:`medseg_dropclass.evaluation.metrics.summarize_cases`
    turns them into per-case and mean per-class Dice/IoU (a class absent from a case's reference and
    prediction has no value there and is left out of the means), the pooled dataset metrics and, given
    ``class_share``, the frequency-bin means. The metric's value (for ``model.pt`` selection) is the mean
    over classes of the per-case mean Dice, background excluded unless ``include_background``. Per-class
    means go to ``engine.state.metrics`` as ``dice/<class>`` and ``iou/<class>`` (NaN where no case has a
    value) plus ``mean_iou``, for MONAI's TensorBoard and metrics-saver handlers. Under
    ``torch.distributed`` the cases of every rank are gathered.

    Args:
        num_classes: classes ``K``.
        class_names: names used in the metric keys (default ``0..K-1``).
        ignore_index: label value left out.
        include_background: count class 0 in the mean.
        class_share: share of each class in the training pixels (for the frequency bins).
        summary_path: where to write the ``summary.json`` (nnU-Net's layout) at every completion.
        case_groups: ``{group: text}``: the summary's ``"groups"`` also holds the means over the cases whose
            reference file name contains ``text`` (e.g. ACDC's ``{"ED": "_ED.", "ES": "_ES."}``).
        output_transform: engine output -> ``(predictions, labels)``; per case ``(1, *spatial)`` class maps
            or ``(K, *spatial)`` scores, and ``(1, *spatial)`` labels (with the label file in their meta).
        hausdorff95: also each class's 95th-percentile Hausdorff distance per case (MONAI's, in mm of the label's
            spacing; :func:`~medseg_dropclass.evaluation.clinical.hausdorff95`) as ``HD95`` in the per-case metrics
            and the means, and each case's voxel volume in mL (``voxel_ml``). Off in training (it costs time).
    """

    def __init__(
        self,
        num_classes: int,
        class_names: Optional[Sequence[str]] = None,
        ignore_index: int = 255,
        include_background: bool = False,
        class_share: Optional[Sequence[float]] = None,
        summary_path: Optional[str] = None,
        case_groups: Optional[Dict[str, str]] = None,
        output_transform: Callable = lambda output: output,
        hausdorff95: bool = False,
    ) -> None:
        self.hausdorff95 = bool(hausdorff95)
        self.num_classes = int(num_classes)
        self.class_names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for num_classes={num_classes}")
        self.ignore_index = ignore_index
        self.include_background = include_background
        self.class_share = list(class_share) if class_share is not None else None
        self.summary_path = summary_path
        self.case_groups = dict(case_groups or {})
        self.summary: Optional[dict] = None
        super().__init__(output_transform=output_transform)

    def reset(self) -> None:
        self.cases: List[dict] = []

    def update(self, output: Sequence[Any]) -> None:
        predictions, labels = output
        if isinstance(predictions, torch.Tensor) and not isinstance(labels, list):
            predictions, labels = list(predictions), list(labels)
        for prediction, label in zip(predictions, labels):
            prediction = torch.as_tensor(prediction).detach().cpu()
            classes = prediction.argmax(0) if prediction.shape[0] > 1 else prediction[0]
            matrix = confusion_matrix(
                classes, torch.as_tensor(label).detach().cpu()[0], self.num_classes, self.ignore_index
            )
            meta = getattr(label, "meta", {}) or {}
            reference = str(meta.get("filename_or_obj", f"case_{len(self.cases)}"))
            case = {"reference": reference, "confusion": matrix.tolist()}
            if self.hausdorff95:
                from medseg_dropclass.evaluation.clinical import hausdorff95

                spacing = [float(v) for v in getattr(label, "pixdim", [1.0] * (label.ndim - 1))][: label.ndim - 1]
                reference_map = torch.as_tensor(label).detach().cpu()[0].numpy()
                case["hd95"] = [
                    hausdorff95(classes.numpy(), reference_map, k, spacing) for k in range(self.num_classes)
                ]
                case["voxel_ml"] = float(np.prod(spacing)) / 1000.0
            self.cases.append(case)

    def _all_cases(self) -> List[dict]:
        if not (dist.is_available() and dist.is_initialized()):
            return self.cases
        gathered: List[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, self.cases)
        return sorted((case for part in gathered for case in part), key=lambda case: case["reference"])

    def compute(self) -> float:
        cases = self._all_cases()
        self.summary = summarize_cases(cases, self.class_names, self.class_share, self.include_background)
        if self.hausdorff95:
            self._add_hausdorff(cases)
        groups = {}
        for group, text in self.case_groups.items():
            members = [case for case in cases if text in pathlib.Path(case["reference"]).name]
            if members:
                part = summarize_cases(members, self.class_names, self.class_share, self.include_background)
                groups[group] = {
                    "cases": len(members),
                    "match": text,
                    "mean": part["mean"],
                    "foreground_mean": part["foreground_mean"],
                }
        if groups:
            self.summary["groups"] = groups
        value = self.summary["foreground_mean"]["Dice"]
        return 0.0 if math.isnan(value) else value  # nothing to score at all: worst, never "best"

    def _add_hausdorff(self, cases: List[dict]) -> None:
        """HD95 into the per-case metrics (matched by reference file) and the per-class means (over cases with a value)."""
        by_reference = {case["reference"]: case for case in cases}
        for entry in self.summary["metric_per_case"]:
            case = by_reference[entry["reference"]]
            entry["voxel_ml"] = case["voxel_ml"]
            for k, name in enumerate(self.class_names):
                entry["metrics"][name]["HD95"] = case["hd95"][k]
        for k, name in enumerate(self.class_names):
            values = [case["hd95"][k] for case in cases if not math.isnan(case["hd95"][k])]
            self.summary["mean"][name]["HD95"] = float(np.mean(values)) if values else float("nan")

    def completed(self, engine: Any, name: str) -> None:
        engine.state.metrics[name] = self.compute()
        summary = self.summary
        engine.state.metrics["mean_iou"] = summary["foreground_mean"]["IoU"]
        for class_name in self.class_names:
            engine.state.metrics[f"dice/{class_name}"] = summary["mean"][class_name]["Dice"]
            engine.state.metrics[f"iou/{class_name}"] = summary["mean"][class_name]["IoU"]
        for group, part in summary.get("groups", {}).items():
            engine.state.metrics[f"{group}/mean_dice"] = part["foreground_mean"]["Dice"]
            for class_name in self.class_names:
                engine.state.metrics[f"{group}/dice/{class_name}"] = part["mean"][class_name]["Dice"]
        if self.summary_path is not None and (not dist.is_initialized() or dist.get_rank() == 0):
            path = pathlib.Path(self.summary_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(summary, indent=2, allow_nan=True))


class OverlayImageHandler:
    """Image | label | prediction panel of the first evaluated sample (middle slice in 3D) in TensorBoard.

    Args:
        summary_writer: a ``SummaryWriter``.
        num_classes: for the colour map.
        step_transform: ``engine -> global step`` (e.g. the trainer's epoch).
        tag: TensorBoard tag.
    """

    def __init__(
        self,
        summary_writer: Any,
        num_classes: int,
        step_transform: Callable[[Any], int] = lambda e: e.state.epoch,
        tag: str = "val/overlay",
    ) -> None:
        self.writer = summary_writer
        self.num_classes = num_classes
        self.step_transform = step_transform
        self.tag = tag

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)

    def iteration_completed(self, engine: Any) -> None:
        if engine.state.iteration != 1:
            return
        output = engine.state.output
        sample = (
            output[0]
            if isinstance(output, list)
            else {k: v[0] for k, v in output.items() if isinstance(v, torch.Tensor)}
        )
        image = sample.get("image_display", sample["image"])
        self.writer.add_image(self.tag, self.panel(image, sample["label"], sample["pred"]), self.step_transform(engine))

    def panel(self, image: torch.Tensor, label: torch.Tensor, prediction: torch.Tensor) -> np.ndarray:
        """``(3, H, 3W)`` float in ``[0, 1]``: the grey image, and the label and the prediction blended over it
        (``monai.visualize.blend_images``); the middle slice in 3D."""
        from monai.visualize import blend_images

        image, label, prediction = (torch.as_tensor(t).detach().cpu().float() for t in (image, label, prediction))
        classes = prediction.argmax(0, keepdim=True) if prediction.shape[0] > 1 else prediction

        def middle(volume: torch.Tensor) -> torch.Tensor:  # (1, *spatial) -> (1, H, W)
            return volume[..., volume.shape[-1] // 2] if volume.ndim == 4 else volume

        grey = middle(image[:1])
        grey = (grey - grey.min()) / (grey.max() - grey.min()).clamp_min(1e-6)
        scale = max(self.num_classes - 1, 1)

        def blended(classes_2d: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(
                blend_images(grey, classes_2d.float() / scale, alpha=0.6, cmap="tab10", rescale_arrays=False)
            )

        panel = torch.cat([grey.expand(3, -1, -1), blended(middle(label)), blended(middle(classes))], dim=2)
        return panel.clamp(0, 1).numpy()


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the iteration and epoch."""


class StopOnNonFiniteLoss:
    """Stop training with an error (non-zero exit from ``monai.bundle run``) as soon as the loss is NaN
    or infinite, instead of training on and saving a NaN model. Epoch checkpoints written before stay;
    nothing is saved for the failing epoch (the savers run at epoch end).

    Args:
        output_key: the key of the trainer's output holding the loss.
    """

    def __init__(self, output_key: str = "loss") -> None:
        self.output_key = output_key

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        output = engine.state.output
        loss = output.get(self.output_key) if isinstance(output, dict) else output
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"training loss is {value} at iteration {engine.state.iteration} (epoch {engine.state.epoch}): stopped; "
                "nothing of this epoch is saved. Check the learning rate, the loss inputs and the data (check-data)."
            )


class LogitAdjustmentPrior:
    """When training starts, give a logit-adjusted pixel loss inside ``loss`` its class prior: the share of each
    class in the training labels (:func:`medseg_dropclass.data.class_share`, the bundles' ``class_share``). Does
    nothing for any other loss, so the labels are counted only where the prior is used."""

    def __init__(
        self, loss: Any, datalist: Sequence[dict], label_transform: Any, num_classes: int, ignore_index: int = 255
    ) -> None:
        self.loss, self.datalist, self.label_transform = loss, datalist, label_transform
        self.num_classes, self.ignore_index = int(num_classes), ignore_index

    def targets(self) -> List[Any]:
        from medseg_dropclass.dropclass.pixel_losses import LogitAdjustedCrossEntropyLoss

        modules = self.loss.modules() if hasattr(self.loss, "modules") else []
        return [m for m in modules if isinstance(m, LogitAdjustedCrossEntropyLoss) and m.log_prior.numel() == 0]

    def set_prior(self, engine: Any = None) -> None:
        targets = self.targets()
        if not targets:
            return
        from medseg_dropclass.data import class_share

        share = class_share(self.datalist, self.label_transform, self.num_classes, self.ignore_index)
        for target in targets:
            target.set_prior(share)

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.STARTED, self.set_prior)
