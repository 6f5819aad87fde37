"""The pixel losses a user would use instead of DropClass, each against a plain float64 computation of its formula
(values and gradients), ignored pixels left out, in 2D and 3D; inside Dice + X and inside DropClass's loss; and as
the bundles' base_loss_name options."""

import pytest
import torch
from torch.nn import functional as F

from medseg_dropclass import DropClassLoss, MaskedDiceCELoss
from medseg_dropclass.dropclass import LogitAdjustedCrossEntropyLoss, MaskedFocalLoss, TopKCrossEntropyLoss

IGNORE = 255


def batch(spatial, classes=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, classes, *spatial, generator=generator, dtype=torch.float64) * 2
    target = torch.randint(0, classes, (2, *spatial), generator=generator)
    target[0, 0] = IGNORE  # a row (2D) or a plane (3D) of ignored pixels
    return logits, target


def reference_focal(logits, target, gamma):
    labelled = target != IGNORE
    log_p = F.log_softmax(logits, dim=1)
    log_pt = log_p.gather(1, target.clamp(max=logits.shape[1] - 1).unsqueeze(1)).squeeze(1)[labelled]
    return (-((1 - log_pt.exp()) ** gamma) * log_pt).mean()


def reference_topk(logits, target, percent):
    labelled = target != IGNORE
    ce = (
        -F.log_softmax(logits, dim=1).gather(1, target.clamp(max=logits.shape[1] - 1).unsqueeze(1)).squeeze(1)[labelled]
    )
    k = max(1, int(ce.numel() * percent / 100))
    return ce.sort(descending=True).values[:k].mean()


def reference_logit_adjusted(logits, target, share, tau):
    labelled = target != IGNORE
    prior = torch.tensor(share, dtype=torch.float64)
    adjusted = logits + tau * prior.log().view(1, -1, *([1] * (logits.ndim - 2)))
    log_p = F.log_softmax(adjusted, dim=1)
    return -log_p.gather(1, target.clamp(max=logits.shape[1] - 1).unsqueeze(1)).squeeze(1)[labelled].mean()


SHARE = [0.7, 0.2, 0.09, 0.01]
CASES = [
    ("focal", lambda: MaskedFocalLoss(2.0, IGNORE), lambda x, y: reference_focal(x, y, 2.0)),
    (
        "focal_gamma0_is_ce",
        lambda: MaskedFocalLoss(0.0, IGNORE),
        lambda x, y: F.cross_entropy(x, y, ignore_index=IGNORE),
    ),
    ("topk10", lambda: TopKCrossEntropyLoss(10.0, IGNORE), lambda x, y: reference_topk(x, y, 10.0)),
    (
        "topk100_is_ce",
        lambda: TopKCrossEntropyLoss(100.0, IGNORE),
        lambda x, y: F.cross_entropy(x, y, ignore_index=IGNORE),
    ),
    (
        "logit_adjusted",
        lambda: LogitAdjustedCrossEntropyLoss(SHARE, 1.0, IGNORE),
        lambda x, y: reference_logit_adjusted(x, y, SHARE, 1.0),
    ),
    (
        "tau0_is_ce",
        lambda: LogitAdjustedCrossEntropyLoss(SHARE, 0.0, IGNORE),
        lambda x, y: F.cross_entropy(x, y, ignore_index=IGNORE),
    ),
]


@pytest.mark.parametrize("spatial", [(6, 5), (4, 5, 3)])
@pytest.mark.parametrize("name,make,reference", CASES, ids=[c[0] for c in CASES])
def test_value_and_gradient_equal_the_float64_formula(name, make, reference, spatial):
    logits, target = batch(spatial)
    ours = logits.clone().requires_grad_(True)
    theirs = logits.clone().requires_grad_(True)
    value, expected = make()(ours, target), reference(theirs, target)
    value.backward()
    expected.backward()
    # MONAI's focal loss computes in float32 whatever the input; the others keep float64
    tolerance = dict(rtol=1e-5, atol=1e-7) if name.startswith("focal") else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(value, expected, **tolerance)
    torch.testing.assert_close(ours.grad, theirs.grad, **tolerance)
    assert not ours.grad[0, :, 0].abs().sum()  # ignored pixels get no gradient


def test_the_logit_adjustment_makes_a_rare_class_win_by_a_margin():
    # equal logits: plain CE is log K for every class; adjusted, the rare class's loss is larger (it must win by a margin)
    logits = torch.zeros(1, 4, 1, 1, dtype=torch.float64)
    loss = LogitAdjustedCrossEntropyLoss(SHARE, 1.0, IGNORE)
    rare, common = (loss(logits, torch.full((1, 1, 1), k)) for k in (3, 0))
    assert rare > F.cross_entropy(logits, torch.full((1, 1, 1), 3)) > common
    with pytest.raises(ValueError, match="not a prior"):
        LogitAdjustedCrossEntropyLoss([1.0])
    with pytest.raises(ValueError, match="3 classes in the logits, 4 in class_share"):
        loss(torch.zeros(1, 3, 2, 2, dtype=torch.float64), torch.zeros(1, 2, 2, dtype=torch.long))


@pytest.mark.parametrize(
    "pixel",
    [
        MaskedFocalLoss(2.0, IGNORE),
        TopKCrossEntropyLoss(10.0, IGNORE),
        LogitAdjustedCrossEntropyLoss(SHARE, 1.0, IGNORE),
    ],
)
def test_dice_plus_the_pixel_term_and_inside_dropclass(pixel):
    logits, target = batch((6, 5))
    logits = logits.float()
    compound = MaskedDiceCELoss(include_background=False, batch=True, ignore_index=IGNORE, pixel_loss=pixel)
    plain = MaskedDiceCELoss(include_background=False, batch=True, ignore_index=IGNORE)
    dice_only = plain(logits, target) - F.cross_entropy(logits, target, ignore_index=IGNORE)
    torch.testing.assert_close(compound(logits, target), dice_only + pixel(logits, target))
    every_ignored = torch.full_like(target, IGNORE)
    assert pixel(logits.requires_grad_(True), every_ignored).item() == 0.0  # no NaN where nothing is labelled
    loss = DropClassLoss(base_loss=compound, alpha=1.0, ignore_index=IGNORE)
    assert torch.isfinite(loss(logits, target))


@pytest.mark.parametrize("name", ["dicefocal", "dicetopk", "logit_adjusted"])
def test_the_bundles_build_each_base_loss_by_name(name, phantom2d):
    from medseg_dropclass.engine.bundles import bundle_parser

    parser = bundle_parser("phantom2d_dropclass", {"dataset_dir": str(phantom2d), "base_loss_name": name})
    base = parser.get_parsed_content("loss").base_loss
    kind = {
        "dicefocal": MaskedFocalLoss,
        "dicetopk": TopKCrossEntropyLoss,
        "logit_adjusted": LogitAdjustedCrossEntropyLoss,
    }[name]
    assert isinstance(base, MaskedDiceCELoss) and isinstance(base.pixel_loss, kind)
    prior = parser.get_parsed_content("train#handlers#logit_prior")
    if name == "logit_adjusted":  # the prior, the bundle's class share, is set when training starts
        with pytest.raises(RuntimeError, match="no class prior"):
            base.pixel_loss(torch.zeros(1, 7, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
        prior.set_prior()
        share = torch.tensor(parser.get_parsed_content("class_share"), dtype=torch.float64)
        torch.testing.assert_close(base.pixel_loss.log_prior.exp(), share / share.sum(), rtol=1e-5, atol=1e-7)
    else:
        assert prior.targets() == []  # nothing to set: the labels are not counted
