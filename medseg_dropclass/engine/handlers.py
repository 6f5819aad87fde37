"""Ignite handlers and metrics for DropClass training in MONAI bundles."""

import math
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from ignite.engine import Events
from ignite.metrics import Metric

from medseg_dropclass.analysis.similarity import class_weight_similarity
from medseg_dropclass.engine.controller import DropClassController
from medseg_dropclass.losses import DropClassLoss
from medseg_dropclass.metrics import confusion_matrix, per_class_dice, per_class_iou

__all__ = ["DropClassTensorBoardHandler", "PerClassSegmentationMetric", "OverlayImageHandler", "unwrap"]


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
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        similarity = class_weight_similarity(unwrap(self.network).head.classifier.weight).cpu().numpy()
        k = similarity.shape[0]
        names = self.class_names or [str(i) for i in range(k)]
        figure, axis = plt.subplots(figsize=(2 + 0.4 * k, 1.5 + 0.4 * k), dpi=80)
        shown = axis.imshow(similarity, vmin=-1, vmax=1, cmap="coolwarm")
        axis.set_xticks(range(k))
        axis.set_xticklabels(names, rotation=90, fontsize=7)
        axis.set_yticks(range(k))
        axis.set_yticklabels(names, fontsize=7)
        axis.set_title("cosine similarity of class weights", fontsize=9)
        figure.colorbar(shown, ax=axis, fraction=0.046)
        figure.tight_layout()
        image = _figure_to_image(figure)
        plt.close(figure)
        return image


class PerClassSegmentationMetric(Metric):
    """Per-class IoU and Dice from one confusion matrix over the whole evaluation (ignore_index excluded).

    The metric's own value (for best-checkpoint selection) is the mean Dice over the classes present
    in the target or the prediction, background excluded unless ``include_background``. Per-class
    values and the mean IoU are also written to ``engine.state.metrics`` as ``dice/<class>``,
    ``iou/<class>`` and ``mean_iou``, so MONAI's ``TensorBoardStatsHandler`` logs them. Reduced over
    ranks under ``torch.distributed``.

    Args:
        num_classes: classes ``K``.
        class_names: names used in the metric keys (default ``0..K-1``).
        ignore_index: label value left out.
        include_background: count class 0 in the means.
        output_transform: engine output -> ``(predictions, labels)``; predictions are per-sample
            ``(K, *spatial)`` scores or ``(1, *spatial)`` class maps, labels ``(1, *spatial)``.
    """

    def __init__(
        self,
        num_classes: int,
        class_names: Optional[Sequence[str]] = None,
        ignore_index: int = 255,
        include_background: bool = False,
        output_transform: Callable = lambda output: output,
    ) -> None:
        self.num_classes = int(num_classes)
        self.class_names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for num_classes={num_classes}")
        self.ignore_index = ignore_index
        self.include_background = include_background
        super().__init__(output_transform=output_transform)

    def reset(self) -> None:
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)

    def update(self, output: Sequence[Any]) -> None:
        predictions, labels = output
        if isinstance(predictions, torch.Tensor) and predictions.ndim > 0 and not isinstance(labels, list):
            predictions, labels = list(predictions), list(labels)
        for prediction, label in zip(predictions, labels):
            prediction = torch.as_tensor(prediction).detach().cpu()
            classes = prediction.argmax(0) if prediction.shape[0] > 1 else prediction[0]
            self.matrix += confusion_matrix(classes, torch.as_tensor(label).detach().cpu()[0], self.num_classes, self.ignore_index)

    def per_class(self) -> Dict[str, torch.Tensor]:
        matrix = self.matrix.clone()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(matrix)
        return {"iou": per_class_iou(matrix), "dice": per_class_dice(matrix)}

    def _mean(self, values: torch.Tensor) -> float:
        start = 0 if self.include_background else 1
        kept = values[start:]
        kept = kept[~torch.isnan(kept)]
        return float(kept.mean()) if kept.numel() else 0.0

    def compute(self) -> float:
        return self._mean(self.per_class()["dice"])

    def completed(self, engine: Any, name: str) -> None:
        values = self.per_class()
        engine.state.metrics[name] = self._mean(values["dice"])
        engine.state.metrics["mean_iou"] = self._mean(values["iou"])
        for k, class_name in enumerate(self.class_names):
            for kind in ("dice", "iou"):
                value = float(values[kind][k])
                engine.state.metrics[f"{kind}/{class_name}"] = 0.0 if math.isnan(value) else value


class OverlayImageHandler:
    """Image | label | prediction panel of the first evaluated sample (middle slice in 3D) in TensorBoard.

    Args:
        summary_writer: a ``SummaryWriter``.
        num_classes: for the colour map.
        step_transform: ``engine -> global step`` (e.g. the trainer's epoch).
        tag: TensorBoard tag.
    """

    def __init__(
        self, summary_writer: Any, num_classes: int, step_transform: Callable[[Any], int] = lambda e: e.state.epoch, tag: str = "val/overlay"
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
        sample = output[0] if isinstance(output, list) else {k: v[0] for k, v in output.items() if isinstance(v, torch.Tensor)}
        self.writer.add_image(self.tag, self.panel(sample["image"], sample["label"], sample["pred"]), self.step_transform(engine))

    def panel(self, image: torch.Tensor, label: torch.Tensor, prediction: torch.Tensor) -> np.ndarray:
        """``(3, H, 3W)`` uint8: grey image, label and prediction coloured by class."""
        import matplotlib

        image, label, prediction = (torch.as_tensor(t).detach().cpu().float() for t in (image, label, prediction))
        classes = prediction.argmax(0) if prediction.shape[0] > 1 else prediction[0]

        def middle(volume: torch.Tensor) -> torch.Tensor:
            return volume[..., volume.shape[-1] // 2] if volume.ndim == 3 else volume

        grey = middle(image[0])
        grey = (grey - grey.min()) / (grey.max() - grey.min()).clamp_min(1e-6)
        colours = torch.as_tensor(matplotlib.colormaps["tab20"](np.linspace(0, 1, max(self.num_classes, 2)))[:, :3]).float()
        colours[0] = 0.0
        rgb_grey = grey[None].expand(3, -1, -1)

        def coloured(classes_2d: torch.Tensor) -> torch.Tensor:
            index = classes_2d.long().clamp(0, self.num_classes - 1)
            overlay = colours[index].permute(2, 0, 1)
            mask = (index > 0).float()[None]
            return rgb_grey * (1 - 0.6 * mask) + overlay * 0.6 * mask

        panel = torch.cat([rgb_grey, coloured(middle(label[0])), coloured(middle(classes))], dim=2)
        return (panel.clamp(0, 1) * 255).to(torch.uint8).numpy()
