"""A few optimisation steps with the whole DropClass recipe reduce the loss."""

import pytest
import torch

from medseg_dropclass import DropClassLoss, DropClassSampler, LinearSchedule, build_network


def tiny_problem():
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(4, 1, 16, 16, generator=generator)
    label = (image[:, 0] > 0.5).long() + (image[:, 0] > 1.2).long()  # 3 classes, the last one rare
    return image, label


@pytest.mark.parametrize("name", ["unet", "segresnet"])
@pytest.mark.parametrize("dropclass", [True, False])
def test_few_training_steps_reduce_the_loss(name, dropclass):
    torch.manual_seed(0)
    kwargs = {"feature_channels": 8}
    kwargs.update(
        {"channels": (8, 16), "strides": (2,)} if name == "unet" else {"blocks_down": (1, 1), "blocks_up": (1,)}
    )
    net = build_network(name, 2, 1, 3, dropclass=dropclass, **kwargs)
    image, label = tiny_problem()
    loss_fn = DropClassLoss(alpha=1.0)
    sampler, schedule = DropClassSampler(3, seed=0), LinearSchedule(0.0, 0.5)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    steps = 30
    net.train()
    losses = []
    for step in range(steps):
        progress = schedule(step, steps) if dropclass else 0.0
        drop_class = sampler(progress) if dropclass else None
        optimizer.zero_grad()
        loss = loss_fn(net(image, drop_class=drop_class), label, progress=progress)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    net.eval()
    with torch.no_grad():
        final = torch.nn.functional.cross_entropy(net(image), label).item()
    assert all(torch.isfinite(torch.tensor(losses)))
    assert final < 0.5 * torch.log(torch.tensor(3.0)).item(), (losses[0], final)
