"""The scheduled DropClass loss over any base loss that honours ignored pixels.

``loss = (1 - p) * base(logits, y) + p * base(dropped_logits, y with pixels of z ignored)
+ alpha * mean(softmax(dropped_logits)[z])``, the last term only when a class ``z`` was dropped.
"""

import functools
from typing import Callable, Dict, NamedTuple, Optional, Union

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn

from medseg_dropclass.dropclass._kernels.fused import fused_is_faster_on
from medseg_dropclass.dropclass._kernels.fused_loss import dropped_ce_and_suppression
from medseg_dropclass.dropclass.head import DropClassOutput
from medseg_dropclass.validation import check_label_values

__all__ = ["DropClassLoss", "MaskedDiceCELoss", "ChannelTargetLoss", "prepare_target", "PreparedTarget"]

BaseLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    """Drop tensor subclasses (MONAI's MetaTensor): the loss needs no metadata, only speed."""
    return tensor if type(tensor) is torch.Tensor else tensor.as_subclass(torch.Tensor)


class PreparedTarget(NamedTuple):
    """Class indices ``(B, *spatial)`` and their value range (one reduction, one host sync per step)."""

    labels: torch.Tensor
    low: int
    high: int


def prepare_target(
    target: torch.Tensor, logits: torch.Tensor, ignore_index: int, check_values: bool = True
) -> PreparedTarget:
    """Turn a label map into ``(B, *spatial)`` class indices and check it against the logits.

    Args:
        target: ``(B, *spatial)`` or MONAI's ``(B, 1, *spatial)``; integer or integral float values.
        logits: ``(B, K, *spatial)``.
        ignore_index: the one value allowed outside ``0..K-1``.
        check_values: check that every value is a class or ``ignore_index``.

    Raises:
        ValueError: shapes that do not match, non-integer values, or a value outside the classes.
    """
    target = _plain(target)
    spatial = logits.shape[2:]
    if target.ndim == logits.ndim and target.shape[1] == 1:
        target = target[:, 0]
    if target.shape[0] != logits.shape[0] or target.shape[1:] != spatial:
        raise ValueError(
            f"target of shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}; "
            f"expected (B, *spatial) = {(logits.shape[0], *spatial)} or (B, 1, *spatial)"
        )
    if target.is_floating_point():
        as_long = target.long()
        if check_values and not torch.equal(as_long.to(target.dtype), target):
            raise ValueError("target holds non-integer label values; labels must be class indices")
        target = as_long
    elif target.dtype != torch.long:
        target = target.long()
    low, high = (int(v) for v in torch.stack(torch.aminmax(target)).tolist())
    num_classes = logits.shape[1]
    if check_values and (low < 0 or high >= num_classes):
        check_label_values(target.unique(), num_classes, ignore_index, where="target")
    return PreparedTarget(target, low, high)


def _any_labelled(target: PreparedTarget, ignore_index: int, excluded: Optional[int] = None) -> bool:
    """Whether some pixel is neither ``ignore_index`` nor ``excluded`` (the dropped class)."""
    if not target.low <= ignore_index <= target.high:
        # no ignored pixel at all: only an all-``excluded`` map has nothing labelled
        return excluded is None or target.low != excluded or target.high != excluded
    labelled = target.labels != ignore_index
    if excluded is not None:
        labelled &= target.labels != excluded
    return bool(labelled.any())


SUPPRESSION_REGIONS = ("all", "dropped_pixels", "other_pixels")


class DropClassLoss(nn.Module):
    """Scheduled DropClass loss.

    Args:
        base_loss: ``base(logits (B, K, *spatial), target (B, *spatial) long) -> scalar`` that
            ignores pixels equal to ``ignore_index``. Default: cross-entropy. A
            ``torch.nn.CrossEntropyLoss`` (class weights allowed) shares one log-softmax between the
            dropped term and the suppression term.
        alpha: weight of the suppression term ``mean softmax(dropped)[z]`` (10 in the authors' code).
        ignore_index: label value that no term learns from (255 for Cityscapes / VOC).
        check_targets: raise on label values outside the classes (a cheap min/max per step).
        alpha_reference_classes: scale alpha by ``K / alpha_reference_classes`` (19: the authors'
            Cityscapes setting, so that each class is suppressed as strongly per drop as there);
            ``None``: alpha as given.
        suppression: the pixels the suppression mean runs over: ``"all"`` (the paper), ``"dropped_pixels"``
            (labelled ``z``: only where ``z`` truly is) or ``"other_pixels"`` (labelled, not ``z``: a
            false-positive penalty).
        dropped_dice_without_z: with a Dice base loss that accepts ``exclude_class``
            (:class:`MaskedDiceCELoss`), leave ``z`` out of the dropped branch's Dice (its pixels are
            ignored there anyway); ``False`` keeps z's Dice term, which then only pushes ``p_z`` down.
        fused: with a cross-entropy base, the dropped branch's CE and suppression as one autograd function
            (:func:`~medseg_dropclass.dropclass._kernels.fused_loss.dropped_ce_and_suppression`: one softmax, one gradient tensor);
            ``None``: where measured faster (on CPU; ``fused.fused_is_faster_on`` with no map size), ``True``/``False``:
            always/never.

    Forward:
        ``output``: a :class:`DropClassOutput` (train mode) or plain logits (a baseline network,
        or eval mode), which give the plain base loss. ``target``: ``(B, *spatial)`` or
        ``(B, 1, *spatial)``. ``progress``: ``p``; defaults to the attribute ``self.progress``,
        which a training loop or handler may set each iteration.

    Returns:
        The total as one scalar tensor. The terms (detached) are kept in ``self.last_terms`` for
        logging: ``total``, ``main``, ``dropped``, ``suppression``, ``progress``, ``drop_class``.
        A branch whose pixels are all ignored contributes zero instead of NaN.
    """

    def __init__(
        self,
        base_loss: Optional[BaseLoss] = None,
        alpha: float = 10.0,
        ignore_index: int = 255,
        check_targets: bool = True,
        alpha_reference_classes: Optional[int] = None,
        suppression: str = "all",
        dropped_dice_without_z: bool = True,
        fused: Optional[bool] = None,
    ) -> None:
        super().__init__()
        if alpha < 0:
            raise ValueError(f"alpha={alpha} must be >= 0")
        if suppression not in SUPPRESSION_REGIONS:
            raise ValueError(f"suppression={suppression!r} is not one of {SUPPRESSION_REGIONS}")
        if alpha_reference_classes is not None and alpha_reference_classes < 2:
            raise ValueError(f"alpha_reference_classes={alpha_reference_classes} must be >= 2")
        if base_loss is None:
            base_loss = nn.CrossEntropyLoss(ignore_index=ignore_index)
        if isinstance(base_loss, nn.CrossEntropyLoss):
            if base_loss.ignore_index != ignore_index:
                raise ValueError(
                    f"base CrossEntropyLoss has ignore_index={base_loss.ignore_index}, DropClassLoss has {ignore_index}"
                )
            if base_loss.reduction != "mean" or base_loss.label_smoothing != 0.0:
                raise ValueError("a CrossEntropyLoss base must use reduction='mean' and no label smoothing")
        self.base_loss = base_loss
        self.alpha = float(alpha)
        self.ignore_index = int(ignore_index)
        self.check_targets = check_targets
        self.alpha_reference_classes = alpha_reference_classes
        self.suppression = suppression
        self.dropped_dice_without_z = dropped_dice_without_z
        self.fused = fused
        self.progress = 0.0
        self.last_terms: Dict[str, Union[torch.Tensor, float, Optional[int]]] = {}

    def forward(
        self, output: Union[DropClassOutput, torch.Tensor], target: torch.Tensor, progress: Optional[float] = None
    ) -> torch.Tensor:
        if isinstance(output, torch.Tensor):
            logits = _plain(output)
            prepared = prepare_target(target, logits, self.ignore_index, self.check_targets)
            total = self.base_term(logits, prepared)
            self.last_terms = {"total": total.detach(), "main": total.detach(), "progress": 0.0, "drop_class": None}
            return total

        logits, dropped_logits, drop_class = _plain(output[0]), _plain(output[1]), output[2]
        progress = self.progress if progress is None else float(progress)
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress={progress} is outside the allowed range 0..1")
        prepared = prepare_target(target, logits, self.ignore_index, self.check_targets)
        if drop_class is not None and not 0 <= drop_class < logits.shape[1]:
            raise ValueError(f"drop_class={drop_class} is outside 0..{logits.shape[1] - 1}")

        main = self.base_term(logits, prepared)
        target = prepared.labels
        dropped_target = target if drop_class is None else target.masked_fill(target == drop_class, self.ignore_index)
        dropped_labelled = _any_labelled(prepared, self.ignore_index, drop_class)
        log_probs: Optional[torch.Tensor] = None
        suppression: Optional[torch.Tensor] = None
        if isinstance(self.base_loss, nn.CrossEntropyLoss) and drop_class is not None and self._fuse(dropped_logits):
            dropped, suppression = dropped_ce_and_suppression(
                dropped_logits,
                dropped_target,
                drop_class,
                self.ignore_index,
                self.base_loss.weight,
                self.suppression_region(target, drop_class),
            )
        elif isinstance(self.base_loss, nn.CrossEntropyLoss):
            log_probs = F.log_softmax(dropped_logits, dim=1)
            dropped = self.guarded(
                log_probs,
                dropped_target,
                lambda lp, t: F.nll_loss(lp, t, weight=self.base_loss.weight, ignore_index=self.ignore_index),
                dropped_labelled,
            )
        else:
            base = self.base_loss
            if drop_class is not None and self.dropped_dice_without_z and isinstance(base, MaskedDiceCELoss):
                base = functools.partial(base, exclude_class=drop_class)
            dropped = self.guarded(dropped_logits, dropped_target, base, dropped_labelled)
        total = (1.0 - progress) * main + progress * dropped

        if drop_class is not None:
            if suppression is None:
                if log_probs is None:
                    log_probs = F.log_softmax(dropped_logits, dim=1)
                suppression = self.suppression_term(log_probs[:, drop_class].exp(), target, drop_class)
            total = total + self.effective_alpha(logits.shape[1]) * suppression
        else:
            suppression = torch.zeros((), device=logits.device)

        self.last_terms = {
            "total": total.detach(),
            "main": main.detach(),
            "dropped": dropped.detach(),
            "suppression": suppression.detach(),
            "progress": progress,
            "drop_class": drop_class,
        }
        return total

    def effective_alpha(self, num_classes: int) -> float:
        """``alpha``, scaled by ``K / alpha_reference_classes`` when that is set."""
        if self.alpha_reference_classes is None:
            return self.alpha
        return self.alpha * num_classes / self.alpha_reference_classes

    def _fuse(self, logits: torch.Tensor) -> bool:
        """The fused CE + suppression of the dropped branch: where measured faster (``fused=None``), always or never."""
        return fused_is_faster_on(logits.device) if self.fused is None else bool(self.fused)

    def suppression_region(self, target: torch.Tensor, drop_class: int) -> Optional[torch.Tensor]:
        """The pixels of the suppression mean, ``(B, *spatial)`` bool (``None``: all pixels, the paper's)."""
        if self.suppression == "all":
            return None
        labelled = target != self.ignore_index
        return (
            labelled & (target == drop_class)
            if self.suppression == "dropped_pixels"
            else labelled & (target != drop_class)
        )

    def suppression_term(self, probability: torch.Tensor, target: torch.Tensor, drop_class: int) -> torch.Tensor:
        """Mean of ``softmax(dropped)[z]`` ``(B, *spatial)`` over the chosen pixels (zero when there are none)."""
        region = self.suppression_region(target, drop_class)
        if region is None:
            return probability.mean()
        count = region.sum()
        return (probability * region).sum() / count.clamp(min=1)

    def base_term(self, logits: torch.Tensor, target: PreparedTarget) -> torch.Tensor:
        """The base loss, or a graph-connected zero when every pixel is ignored."""
        return self.guarded(logits, target.labels, self.base_loss, _any_labelled(target, self.ignore_index))

    @staticmethod
    def guarded(prediction: torch.Tensor, target: torch.Tensor, loss: BaseLoss, labelled: bool) -> torch.Tensor:
        if not labelled:
            return prediction.sum() * 0.0
        return loss(prediction, target)


class ChannelTargetLoss(nn.Module):
    """Adapt a MONAI loss that takes ``(B, 1, *spatial)`` labels to the ``(B, *spatial)`` base-loss form.

    Example: ``ChannelTargetLoss(monai.losses.DiceLoss(to_onehot_y=True, softmax=True, ignore_index=255))``.
    The wrapped loss must honour ``ignore_index`` itself.
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, target.unsqueeze(1))


class MaskedDiceCELoss(nn.Module):
    """Dice + cross-entropy that ignores ``ignore_index`` pixels in both terms, with MONAI's argument names.

    MONAI 1.6.1's ``DiceCELoss`` crashes on a 255 label, so this composes MONAI's ``DiceLoss``
    (which masks ignored voxels) with ``torch.nn.CrossEntropyLoss(ignore_index=...)``. Targets are class
    indices ``(B, *spatial)`` (one-hot encoding and softmax are done here, as ``to_onehot_y=True,
    softmax=True`` in MONAI).

    Args:
        include_background: whether class 0 counts in the Dice term.
        weight: optional per-class weights of the cross-entropy term, ``(K,)``.
        batch: Dice over the whole batch (nnU-Net's batch Dice) instead of per sample.
        lambda_dice, lambda_ce: weights of the two terms.
        smooth_nr, smooth_dr: Dice smoothing (MONAI's defaults).
        ignore_index: label value excluded from both terms.
        pixel_loss: the pixel term in place of cross-entropy (``weight`` then unused), e.g. a focal, top-k or
            logit-adjusted cross-entropy (:mod:`~medseg_dropclass.dropclass.pixel_losses`); it must leave
            ``ignore_index`` pixels out.
    """

    def __init__(
        self,
        include_background: bool = True,
        weight: Optional[torch.Tensor] = None,
        batch: bool = False,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        ignore_index: int = 255,
        pixel_loss: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        self.dice = DiceLoss(
            to_onehot_y=True,
            softmax=True,
            include_background=include_background,
            batch=batch,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            ignore_index=ignore_index,
            reduction="none",
        )
        self.include_background = include_background
        self.pixel_loss = (
            pixel_loss if pixel_loss is not None else nn.CrossEntropyLoss(weight=weight, ignore_index=ignore_index)
        )
        self.lambda_dice = lambda_dice
        self.lambda_ce = lambda_ce

    def forward(self, logits: torch.Tensor, target: torch.Tensor, exclude_class: Optional[int] = None) -> torch.Tensor:
        """``exclude_class``: a class left out of the Dice mean (DropClass's dropped class ``z``)."""
        per_class = self.dice(logits, target.unsqueeze(1))  # (B, K', 1...) or, batch Dice, (K', 1...)
        per_class = per_class.reshape(-1, logits.shape[1] - (0 if self.include_background else 1))
        if exclude_class is not None:
            column = exclude_class - (0 if self.include_background else 1)
            if column >= 0:
                keep = [c for c in range(per_class.shape[1]) if c != column]
                per_class = per_class[:, keep]
        dice = per_class.mean() if per_class.numel() else logits.sum() * 0.0
        return self.lambda_dice * dice + self.lambda_ce * self.pixel_loss(logits, target)
