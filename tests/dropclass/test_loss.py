"""DropClassLoss against the formula written out in float64, and its guards."""

import pytest
import torch
from monai.losses import DiceLoss

from medseg_dropclass import ChannelTargetLoss, DropClassLoss, DropClassOutput, MaskedDiceCELoss

IGNORE = 255


def cross_entropy(logits, target, ignore=IGNORE, weight=None):
    """Mean over labelled pixels of -log softmax(logits)[target], weighted like torch's CE."""
    log_probs = torch.log_softmax(logits, 1).movedim(1, -1).reshape(-1, logits.shape[1])
    flat = target.reshape(-1)
    keep = flat != ignore
    picked = -log_probs[keep, flat[keep]]
    w = torch.ones_like(picked) if weight is None else weight[flat[keep]]
    return (picked * w).sum() / w.sum()


def reference(logits, dropped, target, drop_class, progress, alpha=10.0, weight=None):
    masked = target.clone()
    if drop_class is not None:
        masked[target == drop_class] = IGNORE
    total = (1 - progress) * cross_entropy(logits, target, weight=weight)
    total = total + progress * cross_entropy(dropped, masked, weight=weight)
    if drop_class is not None:
        total = total + alpha * torch.softmax(dropped, 1)[:, drop_class].mean()
    return total


def sample(spatial=(6, 5), classes=4, batch=2, ignore_fraction=0.2):
    logits = torch.randn(batch, classes, *spatial, dtype=torch.float64)
    dropped = torch.randn(batch, classes, *spatial, dtype=torch.float64)
    target = torch.randint(0, classes, (batch, *spatial))
    target[torch.rand(target.shape) < ignore_fraction] = IGNORE
    return logits, dropped, target


@pytest.mark.parametrize("spatial", [(7,), (6, 5), (4, 3, 5)])
@pytest.mark.parametrize("drop_class", [None, 0, 3])
@pytest.mark.parametrize("progress", [0.0, 0.3, 1.0])
def test_matches_reference(spatial, drop_class, progress):
    logits, dropped, target = sample(spatial)
    loss = DropClassLoss()(DropClassOutput(logits, dropped, drop_class), target, progress=progress)
    torch.testing.assert_close(loss, reference(logits, dropped, target, drop_class, progress), atol=1e-5, rtol=1e-5)
    assert loss.ndim == 0


def test_class_weighted_cross_entropy_base_matches_reference_and_generic_path():
    logits, dropped, target = sample()
    weight = torch.tensor([0.2, 1.0, 3.0, 0.5], dtype=torch.float64)
    output = DropClassOutput(logits, dropped, 2)
    fast = DropClassLoss(torch.nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE))(output, target, progress=0.4)
    ce = torch.nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE)
    generic = DropClassLoss(lambda lg, t: ce(lg, t))(output, target, progress=0.4)  # not a CE module: generic path
    expected = reference(logits, dropped, target, 2, 0.4, weight=weight)
    torch.testing.assert_close(fast, expected)
    torch.testing.assert_close(generic, expected)


def test_progress_zero_gives_exactly_the_base_loss():
    logits, dropped, target = sample()
    loss = DropClassLoss(alpha=0.0)(DropClassOutput(logits, dropped, None), target, progress=0.0)
    assert torch.equal(loss, torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE))


def test_plain_logits_give_the_base_loss():
    logits, _, target = sample()
    loss = DropClassLoss()(logits, target)
    assert torch.equal(loss, torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE))


def test_ignored_pixels_do_not_contribute():
    logits, dropped, target = sample()
    loss_fn = DropClassLoss()
    loss_fn(DropClassOutput(logits, dropped, 1), target, progress=0.5)
    main, dropped_term = loss_fn.last_terms["main"], loss_fn.last_terms["dropped"]
    ignored = (target == IGNORE).unsqueeze(1).expand_as(logits)
    # the suppression term averages over all pixels by definition; the CE terms must not see ignored ones
    loss_fn(DropClassOutput(logits.masked_fill(ignored, 50.0), dropped.masked_fill(ignored, -50.0), 1), target, 0.5)
    assert torch.equal(loss_fn.last_terms["main"], main)
    assert torch.equal(loss_fn.last_terms["dropped"], dropped_term)


def test_dropped_pixels_are_ignored_in_the_dropped_term():
    logits, dropped, target = sample()
    loss_fn = DropClassLoss(alpha=0.0)
    loss_fn(DropClassOutput(logits, dropped, 2), target, progress=1.0)
    first = loss_fn.last_terms["dropped"]
    changed = dropped.clone()
    changed[(target == 2).unsqueeze(1).expand_as(dropped)] = 40.0
    loss_fn(DropClassOutput(logits, changed, 2), target, progress=1.0)
    assert torch.equal(loss_fn.last_terms["dropped"], first)


def test_all_ignored_dropped_branch_is_skipped_not_nan():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    dropped = torch.randn(1, 3, 4, 4, requires_grad=True)
    target = torch.full((1, 4, 4), 2)  # only class 2 is labelled, and it is the dropped class
    target[0, 0, 0] = IGNORE
    loss_fn = DropClassLoss(alpha=10.0)
    loss = loss_fn(DropClassOutput(logits, dropped, 2), target, progress=0.5)
    assert torch.isfinite(loss)
    assert loss_fn.last_terms["dropped"] == 0
    expected = 0.5 * torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE)
    expected = expected + 10.0 * torch.softmax(dropped, 1)[:, 2].mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.isfinite(dropped.grad).all() and torch.isfinite(logits.grad).all()


def test_all_ignored_batch_gives_zero_with_a_graph():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = DropClassLoss()(logits, torch.full((1, 4, 4), IGNORE))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_channel_target_layout_and_float_labels_are_accepted():
    logits, dropped, target = sample()
    loss_fn = DropClassLoss()
    output = DropClassOutput(logits, dropped, 1)
    expected = loss_fn(output, target, progress=0.5)
    torch.testing.assert_close(loss_fn(output, target.unsqueeze(1), progress=0.5), expected)
    torch.testing.assert_close(loss_fn(output, target.unsqueeze(1).float(), progress=0.5), expected)


def test_progress_attribute_is_used_when_not_passed():
    logits, dropped, target = sample()
    loss_fn = DropClassLoss()
    loss_fn.progress = 0.7
    output = DropClassOutput(logits, dropped, 0)
    torch.testing.assert_close(loss_fn(output, target), reference(logits, dropped, target, 0, 0.7))
    assert loss_fn.last_terms["progress"] == 0.7 and loss_fn.last_terms["drop_class"] == 0


def test_last_terms_add_up_to_the_total():
    logits, dropped, target = sample()
    loss_fn = DropClassLoss(alpha=3.0)
    total = loss_fn(DropClassOutput(logits, dropped, 3), target, progress=0.25)
    t = loss_fn.last_terms
    torch.testing.assert_close(total.detach(), 0.75 * t["main"] + 0.25 * t["dropped"] + 3.0 * t["suppression"])


@pytest.mark.parametrize("base", ["dicece", "monai_dice"])
def test_monai_style_base_losses_honour_ignored_pixels(base):
    logits, dropped, target = sample(ignore_fraction=0.3)
    if base == "dicece":
        base_loss = MaskedDiceCELoss(ignore_index=IGNORE)
    else:
        base_loss = ChannelTargetLoss(DiceLoss(to_onehot_y=True, softmax=True, ignore_index=IGNORE))
    loss_fn = DropClassLoss(base_loss)
    loss = loss_fn(DropClassOutput(logits, dropped, 1), target, progress=0.5)
    assert torch.isfinite(loss)
    ignored = (target == IGNORE).unsqueeze(1).expand_as(logits)
    main = loss_fn.last_terms["main"]
    loss_fn(DropClassOutput(logits.masked_fill(ignored, 30.0), dropped, 1), target, progress=0.5)
    torch.testing.assert_close(loss_fn.last_terms["main"], main)


def test_bad_targets_name_the_value_and_the_range():
    logits, dropped, target = sample()
    target[0, 0, 0] = 7
    with pytest.raises(
        ValueError, match=r"target: label value 7 outside the classes 0..3 or ignore_index=255 \(num_classes=4\)"
    ):
        DropClassLoss()(DropClassOutput(logits, dropped, 1), target, progress=0.5)
    target[0, 0, 0] = -1
    with pytest.raises(ValueError, match=r"target: label value -1 outside"):
        DropClassLoss()(logits, target)
    with pytest.raises(ValueError, match=r"non-integer label values"):
        DropClassLoss()(logits, torch.full((2, 6, 5), 0.5))
    with pytest.raises(ValueError, match=r"target of shape \(2, 6, 4\) does not match logits"):
        DropClassLoss()(logits, torch.zeros(2, 6, 4, dtype=torch.long))


def test_bad_arguments():
    logits, dropped, target = sample()
    with pytest.raises(ValueError, match=r"progress=1.5 is outside the allowed range 0..1"):
        DropClassLoss()(DropClassOutput(logits, dropped, 1), target, progress=1.5)
    with pytest.raises(ValueError, match=r"drop_class=4 is outside 0..3"):
        DropClassLoss()(DropClassOutput(logits, dropped, 4), target, progress=0.5)
    with pytest.raises(ValueError, match=r"alpha=-1"):
        DropClassLoss(alpha=-1)
    with pytest.raises(ValueError, match=r"ignore_index=-100, DropClassLoss has 255"):
        DropClassLoss(torch.nn.CrossEntropyLoss())


def test_dropped_branch_is_skipped_when_every_pixel_is_the_dropped_class():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    dropped = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), 1)  # no ignored pixel, every pixel is z
    loss_fn = DropClassLoss(alpha=0.0)
    loss = loss_fn(DropClassOutput(logits, dropped, 1), target, progress=1.0)
    assert loss.item() == 0.0 and loss_fn.last_terms["dropped"] == 0
    loss.backward()
    target[1, 2, 3] = 0  # one pixel of another class: the term is back
    loss_fn(DropClassOutput(logits, dropped, 1), target, progress=1.0)
    expected = torch.nn.functional.cross_entropy(dropped, target.masked_fill(target == 1, IGNORE), ignore_index=IGNORE)
    torch.testing.assert_close(loss_fn.last_terms["dropped"], expected.detach())


# --- DropClass variants for few classes, each against the formula written out ------------------------


def soft_dice_loss(logits, target, classes, ignore=IGNORE, smooth=1e-5):
    """Batch soft Dice loss averaged over ``classes``, labelled pixels only (nnU-Net's batch Dice)."""
    probs = torch.softmax(logits, 1)
    keep = target != ignore
    losses = []
    for k in classes:
        p = probs[:, k][keep]
        g = (target[keep] == k).to(probs.dtype)
        losses.append(1 - (2 * (p * g).sum() + smooth) / (p.sum() + g.sum() + smooth))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("region", ["all", "dropped_pixels", "other_pixels"])
@pytest.mark.parametrize("reference_classes", [None, 19])
def test_suppression_region_and_alpha_scaling_match_reference(region, reference_classes):
    logits, dropped, target = sample((6, 5), classes=4)
    drop_class, progress, alpha = 2, 0.4, 10.0
    loss = DropClassLoss(alpha=alpha, suppression=region, alpha_reference_classes=reference_classes)
    value = loss(DropClassOutput(logits, dropped, drop_class), target, progress=progress)
    probability = torch.softmax(dropped, 1)[:, drop_class]
    labelled = target != IGNORE
    pixels = {
        "all": torch.ones_like(labelled),
        "dropped_pixels": labelled & (target == drop_class),
        "other_pixels": labelled & (target != drop_class),
    }[region]
    effective_alpha = alpha if reference_classes is None else alpha * 4 / 19
    expected = (
        reference(logits, dropped, target, drop_class, progress, alpha=0.0)
        + effective_alpha * probability[pixels].mean()
    )
    torch.testing.assert_close(value, expected, atol=1e-6, rtol=1e-6)
    # with p = 0 the dropped logits reach the loss only through the suppression: no gradient outside the region
    dropped.requires_grad_(True)
    loss(DropClassOutput(logits, dropped, drop_class), target, progress=0.0).backward()
    moved = dropped.grad.abs().sum(1) > 0
    assert torch.equal(moved, pixels)


@pytest.mark.parametrize("without_z", [True, False])
def test_dice_ce_dropped_branch_leaves_z_out_of_the_dice(without_z):
    logits, dropped, target = sample((6, 5), classes=4)
    drop_class, progress = 3, 0.6
    base = MaskedDiceCELoss(include_background=False, batch=True)
    loss = DropClassLoss(base_loss=base, alpha=0.0, dropped_dice_without_z=without_z)
    value = loss(DropClassOutput(logits, dropped, drop_class), target, progress=progress)
    masked = target.masked_fill(target == drop_class, IGNORE)
    main = soft_dice_loss(logits, target, [1, 2, 3]) + cross_entropy(logits, target)
    dice_classes = [1, 2] if without_z else [1, 2, 3]
    dropped_term = soft_dice_loss(dropped, masked, dice_classes) + cross_entropy(dropped, masked)
    torch.testing.assert_close(value, (1 - progress) * main + progress * dropped_term, atol=1e-6, rtol=1e-6)


def test_masked_dice_ce_matches_the_formula_per_sample_and_batch():
    logits, _, target = sample((5, 4), classes=3, batch=3)
    batch_loss = MaskedDiceCELoss(include_background=False, batch=True)(logits, target)
    torch.testing.assert_close(
        batch_loss, soft_dice_loss(logits, target, [1, 2]) + cross_entropy(logits, target), atol=1e-6, rtol=1e-6
    )
    per_sample = MaskedDiceCELoss(include_background=True)(logits, target)
    dice = torch.stack(
        [soft_dice_loss(logits[b : b + 1], target[b : b + 1], [k]) for b in range(3) for k in range(3)]
    ).mean()
    torch.testing.assert_close(per_sample, dice + cross_entropy(logits, target), atol=1e-6, rtol=1e-6)


def test_variant_arguments_are_checked():
    with pytest.raises(
        ValueError, match=r"suppression='edges' is not one of \('all', 'dropped_pixels', 'other_pixels'\)"
    ):
        DropClassLoss(suppression="edges")
    with pytest.raises(ValueError, match=r"alpha_reference_classes=1 must be >= 2"):
        DropClassLoss(alpha_reference_classes=1)
