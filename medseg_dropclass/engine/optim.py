"""The recipe's optimizers: SGD with Nesterov momentum (nnU-Net's and the authors' choice) or Adam(W),
one name apart, with the polynomial learning-rate decay both use."""

from typing import Iterable

import torch

__all__ = ["OPTIMIZERS", "build_optimizer", "poly_schedule"]

OPTIMIZERS = ("sgd", "adam")


def build_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 3e-5, momentum: float = 0.99
) -> torch.optim.Optimizer:
    """``"sgd"``: SGD(momentum, nesterov=True) as in nnU-Net; ``"adam"``: AdamW (decoupled weight decay).

    Raises:
        ValueError: an unknown name, or a non-positive learning rate.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer {name!r} is not one of {OPTIMIZERS}")
    if not lr > 0:
        raise ValueError(f"learning rate {lr} must be > 0")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def poly_schedule(
    optimizer: torch.optim.Optimizer, max_epochs: int, power: float = 0.9
) -> torch.optim.lr_scheduler.LRScheduler:
    """``lr * (1 - epoch / max_epochs) ** power``, stepped once per epoch (nnU-Net)."""
    return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=max_epochs, power=power)
