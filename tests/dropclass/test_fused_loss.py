"""The fused dropped-branch CE + suppression against the plain autograd path: values, gradients, edge cases, AMP."""

import pytest
import torch

from medseg_dropclass.dropclass import DropClassOutput
from medseg_dropclass.dropclass._kernels.fused_loss import dropped_ce_and_suppression
from medseg_dropclass.dropclass.loss import DropClassLoss


def _loss_and_grads(fused, suppression, weight, logits, dropped, target, drop_class=2):
    ce = torch.nn.CrossEntropyLoss(weight=weight, ignore_index=255)
    loss = DropClassLoss(ce, alpha=3.0, suppression=suppression, fused=fused)
    value = loss(DropClassOutput(logits, dropped, drop_class), target, progress=0.4)
    return value, torch.autograd.grad(value, (logits, dropped)), loss.last_terms


@pytest.mark.parametrize("suppression", ["all", "dropped_pixels", "other_pixels"])
@pytest.mark.parametrize("weighted", [False, True])
def test_fused_matches_the_plain_path_in_value_and_gradient(suppression, weighted):
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 6, 7, dtype=torch.float64, requires_grad=True)
    dropped = torch.randn(2, 5, 6, 7, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 5, (2, 6, 7))
    target[0, :2] = 255
    weight = torch.rand(5, dtype=torch.float64) + 0.5 if weighted else None
    plain = _loss_and_grads(False, suppression, weight, logits, dropped, target)
    fused = _loss_and_grads(True, suppression, weight, logits, dropped, target)
    assert fused[0].item() == pytest.approx(plain[0].item(), abs=1e-12)
    for name in ("main", "dropped", "suppression"):
        assert float(fused[2][name]) == pytest.approx(float(plain[2][name]), abs=1e-12)
    for a, b in zip(fused[1], plain[1]):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    assert fused[1][1].abs().sum() > 0


def test_every_pixel_ignored_gives_a_zero_ce_with_zero_gradient():
    torch.manual_seed(1)
    dropped = torch.randn(1, 4, 3, 3, requires_grad=True)
    target = torch.full((1, 3, 3), 255)
    nll, suppression = dropped_ce_and_suppression(dropped, target, 1)
    (grad,) = torch.autograd.grad(nll, dropped, retain_graph=True)
    assert nll.item() == 0.0 and torch.count_nonzero(grad) == 0
    (grad,) = torch.autograd.grad(suppression, dropped)  # the suppression still acts on every pixel
    assert suppression.item() == pytest.approx(torch.softmax(dropped, 1)[:, 1].mean().item()) and grad.abs().sum() > 0


def test_the_default_is_fused_on_cpu_and_bfloat16_autocast_stays_within_tolerance():
    assert DropClassLoss(torch.nn.CrossEntropyLoss(ignore_index=255))._fuse(torch.zeros(1))
    torch.manual_seed(2)
    dropped = torch.randn(2, 6, 16, 16)
    target = torch.randint(0, 6, (2, 16, 16))
    reference = dropped.clone().requires_grad_(True)
    nll, suppression = dropped_ce_and_suppression(reference, target, 3)
    (nll + 10 * suppression).backward()
    half = dropped.to(torch.bfloat16).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        nll_h, suppression_h = dropped_ce_and_suppression(half, target, 3)
    assert nll_h.dtype == torch.float32  # statistics in float32
    (nll_h + 10 * suppression_h).backward()
    assert half.grad.dtype == torch.bfloat16
    # bfloat16 keeps 8 bits of mantissa: the inputs themselves moved by up to 2^-8 relative
    assert nll_h.item() == pytest.approx(nll.item(), rel=1e-2) and suppression_h.item() == pytest.approx(
        suppression.item(), rel=2e-2
    )
    torch.testing.assert_close(half.grad.float(), reference.grad, atol=2e-4, rtol=5e-2)
