"""DropClassHead against a plain float64 reference of the paper's formulas, in 1D/2D/3D."""

import pytest
import torch

from medseg_dropclass import DropClassHead, DropClassOutput, class_importance, kept_class_scale
from tests.conftest import spatial_shape

NORMS = ["batch", "instance"]  # batch runs the fused train path, instance the unfused one


def make_head(spatial_dims, channels=6, classes=4, norm="batch", **kwargs):
    head = DropClassHead(spatial_dims, channels, classes, norm=norm, **kwargs).double()
    with torch.no_grad():
        if head.projection.norm.weight is not None:
            head.projection.norm.weight.uniform_(0.5, 1.5)
            head.projection.norm.bias.uniform_(-0.5, 0.5)
        head.classifier.weight.normal_()
    return head


def features(spatial_dims, batch=3, channels=6):
    return torch.relu(torch.randn(batch, channels, *spatial_shape(spatial_dims), dtype=torch.float64)) + 0.05


def reference(head, x, drop_class, train):
    """The formulas, written out: S_k = ReLU(w_k); scale = mean_{k != z} S_k; classify(ReLU(norm(conv(x * scale))))."""
    k, c = head.num_classes, head.in_channels
    d = x.ndim - 2
    w = head.classifier.weight.reshape(k, c)
    bias = head.classifier.bias.view(1, k, *[1] * d)
    importance = torch.clamp(w, min=0)
    kept = [i for i in range(k) if i != drop_class]
    scale = importance[kept].mean(0).view(1, c, *[1] * d)

    def classify(f):
        return torch.einsum("kc,bc...->bk...", w, f) + bias

    z = torch.einsum("oc,bc...->bo...", head.projection.conv.weight.reshape(c, c), x * scale)
    norm = head.projection.norm
    view = (1, c) + (1,) * d
    if isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
        if train:
            dims = [0] + list(range(2, x.ndim))
            mean, var = z.mean(dims), z.var(dims, unbiased=False)
        else:
            mean, var = norm.running_mean, norm.running_var
        z = (z - mean.view(view)) / torch.sqrt(var.view(view) + norm.eps)
    else:  # instance norm, no affine
        dims = list(range(2, x.ndim))
        z = (z - z.mean(dims, keepdim=True)) / torch.sqrt(z.var(dims, unbiased=False, keepdim=True) + norm.eps)
    if norm.weight is not None:
        z = z * norm.weight.view(view) + norm.bias.view(view)
    return classify(x), classify(torch.relu(z))


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("drop_class", [None, 0, 2])
def test_train_forward_matches_reference(spatial_dims, norm, drop_class):
    head = make_head(spatial_dims, norm=norm).train()
    x = features(spatial_dims)
    out = head(x, drop_class=drop_class)
    assert isinstance(out, DropClassOutput)
    assert out.drop_class == drop_class
    logits, dropped = reference(head, x, drop_class, train=True)
    assert out.logits.shape == (3, 4) + spatial_shape(spatial_dims)
    torch.testing.assert_close(out.logits, logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.dropped_logits, dropped, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("norm", NORMS)
def test_eval_keeps_every_class_and_matches_reference(spatial_dims, norm):
    head = make_head(spatial_dims, norm=norm).train()
    for _ in range(3):  # move the running statistics away from their initial values
        head(features(spatial_dims), drop_class=1)
    head.eval()
    x = features(spatial_dims)
    out = head(x)
    assert isinstance(out, torch.Tensor)
    _, expected = reference(head, x, None, train=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # a drop_class passed at inference is ignored: nothing is ever dropped in eval mode
    torch.testing.assert_close(head(x, drop_class=2), out, atol=0, rtol=0)


def test_classifier_inference_path_returns_main_logits():
    head = make_head(2, inference_path="classifier").eval()
    x = features(2)
    main, _ = reference(head, x, None, train=False)
    torch.testing.assert_close(head(x), main, atol=1e-5, rtol=1e-5)


def test_running_statistics_follow_batch_norm():
    head = make_head(2, norm="batch").train()
    x = features(2)
    head(x, drop_class=1)
    scale = kept_class_scale(class_importance(head.classifier.weight), 1)
    z = torch.einsum("oc,bchw->bohw", head.projection.conv.weight.reshape(6, 6), x * scale.view(1, 6, 1, 1))
    reference_bn = torch.nn.BatchNorm2d(6).double()
    reference_bn(z)
    torch.testing.assert_close(head.projection.norm.running_mean, reference_bn.running_mean)
    torch.testing.assert_close(head.projection.norm.running_var, reference_bn.running_var)
    assert int(head.projection.norm.num_batches_tracked) == 1


def test_instance_norm_keeps_no_running_statistics_and_is_mode_independent():
    """Instance norm normalises each image by its own statistics: nothing is tracked in training,
    and the eval output equals the training projection branch with nothing dropped."""
    head = make_head(2, norm="instance").train()
    x = features(2)
    dropped = head(x, drop_class=None).dropped_logits
    assert getattr(head.projection.norm, "running_mean", None) is None
    head.eval()
    torch.testing.assert_close(head(x), dropped, atol=1e-10, rtol=1e-10)
    # one image's output does not depend on the other images of the batch
    torch.testing.assert_close(head(x[:1]), head(x)[:1], atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("norm", NORMS)
def test_dropped_class_importance_gets_no_gradient_through_dropped_branch(norm):
    drop_class = 2
    head = make_head(2, norm=norm).train()
    out = head(features(2), drop_class=drop_class)
    others = [k for k in range(4) if k != drop_class]
    # logits of the other classes depend on w_z only through the kept-class scale
    out.dropped_logits[:, others].pow(2).sum().backward()
    grad = head.classifier.weight.grad.reshape(4, 6)
    assert torch.all(grad[drop_class] == 0)
    assert torch.all(grad[others].abs().sum(1) > 0)


def test_kept_class_scale_gradient_is_zero_for_the_dropped_class():
    weight = torch.randn(5, 7, 1, 1, dtype=torch.float64, requires_grad=True)
    kept_class_scale(class_importance(weight), 3).sum().backward()
    grad = weight.grad.reshape(5, 7)
    assert torch.all(grad[3] == 0)
    # d scale / d w_k = 1/(K-1) where w_k > 0 (ReLU), 0 where w_k < 0, for every kept class k
    kept = torch.tensor([0, 1, 2, 4])
    positive = (weight.detach().reshape(5, 7)[kept] > 0).double()
    torch.testing.assert_close(grad[kept], positive / 4)


@pytest.mark.parametrize("norm", NORMS)
def test_every_parameter_gets_a_gradient(norm):
    head = make_head(3, norm=norm).train()
    x = features(3).requires_grad_()
    out = head(x, drop_class=0)
    (out.logits.pow(2).mean() + out.dropped_logits.pow(2).mean()).backward()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_fused_and_unfused_training_paths_have_equal_gradients(spatial_dims):
    fused = make_head(spatial_dims).train()
    unfused = make_head(spatial_dims).train()
    unfused.load_state_dict(fused.state_dict())
    unfused.fused = False  # the plain autograd path
    x = features(spatial_dims)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out1, out2 = fused(x1, drop_class=1), unfused(x2, drop_class=1)
    g_main, g_dropped = torch.randn_like(out1.logits), torch.randn_like(out1.logits)
    ((out1.logits * g_main).sum() + (out1.dropped_logits * g_dropped).sum()).backward()
    ((out2.logits * g_main).sum() + (out2.dropped_logits * g_dropped).sum()).backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-10, rtol=1e-8)
    for (name, p1), (_, p2) in zip(fused.named_parameters(), unfused.named_parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, atol=1e-10, rtol=1e-8, msg=name)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("inference_path", ["projection", "classifier"])
def test_eval_path_is_torchscriptable(spatial_dims, inference_path):
    head = make_head(spatial_dims, inference_path=inference_path).eval()
    scripted = torch.jit.script(head)
    x = features(spatial_dims)
    torch.testing.assert_close(scripted(x), head(x), atol=1e-12, rtol=1e-12)


def test_drop_class_none_in_train_mode_keeps_every_class():
    head = make_head(2).train()
    x = features(2)
    out = head(x, drop_class=None)
    _, expected = reference(head, x, None, train=True)
    torch.testing.assert_close(out.dropped_logits, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"spatial_dims": 4}, r"spatial_dims=4 is not supported; allowed: 1, 2 or 3"),
        ({"spatial_dims": 0}, r"spatial_dims=0"),
        ({"num_classes": 1}, r"num_classes=1 is too small"),
        ({"in_channels": 0}, r"in_channels=0 must be >= 1"),
        ({"inference_path": "main"}, r"inference_path='main' is not one of"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    arguments = {"spatial_dims": 2, "in_channels": 4, "num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        DropClassHead(**arguments)


def test_bad_forward_arguments():
    head = DropClassHead(2, 4, 3).train()
    with pytest.raises(ValueError, match=r"feature map with 5 channels; expected in_channels=4"):
        head(torch.randn(1, 5, 4, 4))
    with pytest.raises(ValueError, match=r"drop_class=3 is outside 0..2"):
        head(torch.randn(1, 4, 4, 4), drop_class=3)
    with pytest.raises(ValueError, match=r"drop_class=-1 is outside 0..2"):
        head(torch.randn(1, 4, 4, 4), drop_class=-1)


@pytest.mark.parametrize("norm", NORMS)
def test_detach_dropped_class_keeps_values_and_blocks_only_the_row_of_z(norm):
    """The dropped branch's logits are unchanged, but neither w_z nor b_z gets a gradient from them;
    the other rows, the projection and the main branch still learn."""
    drop_class = 1
    plain = make_head(2, norm=norm).train()
    detached = make_head(2, norm=norm, detach_dropped_class=True).train()
    detached.load_state_dict(plain.state_dict())
    x = features(2)
    a, b = plain(x, drop_class=drop_class), detached(x, drop_class=drop_class)
    torch.testing.assert_close(b.logits, a.logits)
    torch.testing.assert_close(b.dropped_logits, a.dropped_logits)
    b.dropped_logits.pow(2).sum().backward()
    weight_grad, bias_grad = detached.classifier.weight.grad.reshape(4, 6), detached.classifier.bias.grad
    assert torch.all(weight_grad[drop_class] == 0) and bias_grad[drop_class] == 0
    others = [k for k in range(4) if k != drop_class]
    assert torch.all(weight_grad[others].abs().sum(1) > 0) and torch.all(bias_grad[others] != 0)
    assert detached.projection.conv.weight.grad.abs().sum() > 0
    a.dropped_logits.pow(2).sum().backward()  # without the option, w_z learns from the dropped branch
    assert plain.classifier.weight.grad.reshape(4, 6)[drop_class].abs().sum() > 0
    detached.zero_grad()
    detached(x, drop_class=drop_class).logits.pow(2).sum().backward()  # the main branch still trains w_z
    assert detached.classifier.weight.grad.reshape(4, 6)[drop_class].abs().sum() > 0


def test_the_train_head_runs_under_bfloat16_autocast_in_float32_inside():
    """AMP: the fused train path (batch norm) was an autograd function without autocast handling and raised
    'self and mat2 must have the same dtype' under torch.autocast. Inside, everything is float32: with a
    bfloat16 feature map the outputs equal the float32 head's on the same (bfloat16-rounded) features, and the
    gradients reach the bfloat16 input."""
    import copy

    torch.manual_seed(0)
    head = DropClassHead(2, 16, 5).train()
    reference = copy.deepcopy(head)
    features = torch.randn(2, 16, 12, 12).bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(features, drop_class=2)
    assert out.logits.dtype == out.dropped_logits.dtype == torch.float32
    rounded = features.detach().float().requires_grad_()
    expected = reference(rounded, drop_class=2)
    torch.testing.assert_close(out.logits, expected.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.dropped_logits, expected.dropped_logits, rtol=1e-5, atol=1e-5)
    (out.logits.square().mean() + out.dropped_logits.square().mean()).backward()
    (expected.logits.square().mean() + expected.dropped_logits.square().mean()).backward()
    assert features.grad.dtype == torch.bfloat16
    torch.testing.assert_close(
        features.grad.float(), rounded.grad, rtol=2e-2, atol=1e-4
    )  # bfloat16 rounding of the gradient
    torch.testing.assert_close(head.classifier.weight.grad, reference.classifier.weight.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head.projection.norm.running_var, reference.projection.norm.running_var)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_the_eval_head_runs_under_autocast_in_float32_inside(spatial_dims):
    """AMP inference: the chunked eval path's ``out=`` products are outside autocast's reach and raised 'mat1 and
    mat2 must have the same dtype' on a bfloat16 (CPU) or float16 (CUDA, found on an H200) feature map. Inside,
    the products now run in float32: the logits equal the float32 head's on the same rounded features."""
    torch.manual_seed(0)
    head = DropClassHead(spatial_dims, 16, 5).eval()
    head.projection.norm.running_mean.uniform_(-0.5, 0.5)
    head.projection.norm.running_var.uniform_(0.5, 2.0)
    features = torch.randn((2, 16) + spatial_shape(spatial_dims, 6)).bfloat16()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(features)
    assert out.dtype == torch.float32
    with torch.inference_mode():
        expected = head(features.float())
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_a_training_step_of_a_network_under_autocast_matches_float32_within_bfloat16_tolerance():
    from medseg_dropclass import DropClassLoss, build_network

    torch.manual_seed(0)
    network = build_network(
        "unet",
        spatial_dims=2,
        in_channels=1,
        num_classes=4,
        dropclass=True,
        feature_channels=8,
        channels=(8, 16),
        strides=(2,),
        norm="batch",
    ).train()
    image, label = torch.randn(2, 1, 32, 32), torch.randint(0, 4, (2, 1, 32, 32))
    loss = DropClassLoss(torch.nn.CrossEntropyLoss(ignore_index=255), alpha=1.0)
    values = {}
    for name, enabled in (("float32", False), ("bfloat16", True)):
        torch.manual_seed(1)
        net = copy_of(network)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            value = loss(net(image, drop_class=1), label[:, 0], progress=0.5)
        value.backward()
        values[name] = (float(value), net)
    assert abs(values["bfloat16"][0] - values["float32"][0]) < 0.02 * abs(values["float32"][0])
    grads = [p.grad for p in values["bfloat16"][1].parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def copy_of(module):
    import copy

    return copy.deepcopy(module)


def test_the_fused_path_is_the_default_only_where_it_was_measured_faster(monkeypatch):
    from medseg_dropclass.dropclass._kernels.fused import FUSED_MAX_CHANNELS, fused_is_faster_on

    assert fused_is_faster_on(torch.device("cpu")) and not fused_is_faster_on(torch.device("cuda", 0))
    assert fused_is_faster_on("cpu", FUSED_MAX_CHANNELS) and not fused_is_faster_on("cpu", FUSED_MAX_CHANNELS + 1)
    assert fused_is_faster_on("cpu", 8, spatial_dims=2) and fused_is_faster_on("cpu", 8, 2, autocast=True)
    # CUDA (measured on an H200): fused for 3D maps in float32 only
    assert fused_is_faster_on("cuda", 8, spatial_dims=3) and not fused_is_faster_on("cuda", 8, spatial_dims=2)
    assert not fused_is_faster_on("cuda", 8, spatial_dims=3, autocast=True)
    assert not fused_is_faster_on("cuda", FUSED_MAX_CHANNELS + 1, spatial_dims=3)
    assert not fused_is_faster_on("mps", 8, spatial_dims=3)
    calls = []

    def fused_train_forward(self, x, scale, drop_class):
        calls.append(self.fused)
        return DropClassOutput(x, x, drop_class)

    monkeypatch.setattr(DropClassHead, "fused_train_forward", fused_train_forward)
    x = features(2)
    for fused, expected in ((None, [None]), (True, [True]), (False, [])):
        calls.clear()
        head = make_head(2).train()
        head.fused = fused
        head(x, drop_class=1)
        assert calls == expected, fused
    # a wide head (above FUSED_MAX_CHANNELS) takes plain autograd by default, the fused path when asked
    wide = DropClassHead(2, FUSED_MAX_CHANNELS + 1, 3).train()
    x_wide = torch.randn(2, FUSED_MAX_CHANNELS + 1, 4, 4)
    calls.clear()
    out = wide(x_wide, drop_class=1)
    assert calls == [] and out.logits.shape == (2, 3, 4, 4)
    wide.fused = True
    wide(x_wide, drop_class=1)
    assert calls == [True]
    # the head asks with its spatial dims and whether autocast is on for the map's device
    import medseg_dropclass.dropclass.head as head_module

    asked = []
    monkeypatch.setattr(head_module, "fused_is_faster_on", lambda *args: asked.append(args) or False)
    volume_head = DropClassHead(3, 6, 3).train()
    volume_head(torch.randn(2, 6, 3, 3, 3), drop_class=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        volume_head(torch.randn(2, 6, 3, 3, 3), drop_class=0)
    assert asked == [(torch.device("cpu"), 6, 3, False), (torch.device("cpu"), 6, 3, True)]
