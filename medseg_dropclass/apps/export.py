"""Portable exported models: ONNX, ``torch.export`` programs and TorchScript, with a parity check.

TorchScript (MONAI's ``ckpt_export``) is deprecated from torch 2.13; ONNX runs without the training code
(onnxruntime) and a ``torch.export`` program (``.pt2``) without this package. Every format is exported in eval
mode (the DropClass head's inference path) for one image of dynamic spatial size (a multiple of the network's
size divisor; :func:`load_exported` pads other sizes and loops over a batch), then checked
against the network it came from on inputs of two sizes.

    python -m medseg_dropclass export --bundle phantom2d_dropclass --format onnx --output model.onnx [--ckpt model.pt]
"""

import pathlib
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["FORMATS", "PARITY_TOLERANCE", "ExportableNet", "export_network", "load_exported", "parity", "export_main"]

FORMATS = ("onnx", "exported-program", "torchscript")
SUFFIXES = {"onnx": ".onnx", "exported-program": ".pt2", "torchscript": ".ts"}
PARITY_TOLERANCE = 1e-4  # |logit difference| allowed in float32 ...
RELATIVE_TOLERANCE = 1e-5  # ... plus this share of the logit's size


class ExportableNet(torch.nn.Module):
    """:class:`~medseg_dropclass.networks.SegmentationNet`'s eval forward for inputs whose spatial sizes are
    multiples of its ``size_divisor``: no padding branch for a tracer to freeze into one input size. The
    runner of :func:`load_exported` pads any input to such a size and crops the logits back, as the network does."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.network
        logits = net.head(net.features(x))
        if net.output_stride != 1:
            logits = torch.nn.functional.interpolate(
                logits, size=x.shape[2:], mode=net.interpolation, align_corners=False
            )
        return logits


def _dynamic_shapes(spatial_dims: int, divisor: int) -> tuple:
    # batch 1 (the head's pointwise kernels use the batch size as a number); the runner loops over a batch
    sizes = {
        axis + 2: divisor * torch.export.Dim(f"blocks{axis}", min=1, max=4096 // divisor)
        for axis in range(spatial_dims)
    }
    return (sizes,)


def _padded_example(example: torch.Tensor, divisor: int) -> torch.Tensor:
    """One image with every size a multiple of ``divisor``, at least two blocks."""
    sizes = [max(2 * divisor, -(-int(s) // divisor) * divisor) for s in example.shape[2:]]
    return torch.zeros([1, example.shape[1], *sizes], dtype=example.dtype)


def export_network(network: torch.nn.Module, example: torch.Tensor, path: str, format: str) -> pathlib.Path:
    """Export ``network`` (eval mode) traced on ``example`` ``(B, C, *spatial)`` to ``path`` in ``format``."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; known: {', '.join(FORMATS)}")
    network = network.eval()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spatial_dims = example.ndim - 2
    divisor = int(getattr(network, "size_divisor", 1))
    shapes = _dynamic_shapes(spatial_dims, divisor)
    traced, example = ExportableNet(network).eval(), _padded_example(example, divisor)
    with torch.no_grad():
        if format == "onnx":
            import onnx

            program = torch.onnx.export(
                traced,
                (example,),
                dynamo=True,
                dynamic_shapes=shapes,
                input_names=["image"],
                output_names=["pred"],
                verbose=False,
            )
            program.save(str(path))
            model = onnx.load(str(path))
            onnx.helper.set_model_props(model, {"size_divisor": str(divisor)})
            onnx.save(model, str(path))
        elif format == "exported-program":
            program = torch.export.export(traced, (example,), dynamic_shapes=shapes)
            torch.export.save(program, str(path), extra_files={"size_divisor": str(divisor)})
        else:
            torch.jit.save(torch.jit.script(network), str(path))
    return path


def load_exported(path: str, format: str) -> Callable[[np.ndarray], np.ndarray]:
    """A ``(B, C, *spatial) float32 array -> logits array`` function running the exported file alone
    (onnxruntime or ``torch.export.load``; TorchScript through ``torch.jit.load``). Inputs of any size: padded
    at the end to a multiple of the stored size divisor, the logits cropped back."""
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        divisor = int(session.get_modelmeta().custom_metadata_map.get("size_divisor", "1"))
        model = lambda array: session.run(None, {name: np.ascontiguousarray(array, dtype=np.float32)})[0]  # noqa: E731
    elif format == "exported-program":
        extra = {"size_divisor": ""}
        module = torch.export.load(str(path), extra_files=extra).module()
        divisor = int(extra["size_divisor"] or 1)
        model = lambda array: _torch_run(module, array)  # noqa: E731
    elif format == "torchscript":
        module, divisor = torch.jit.load(str(path)), 1  # the scripted network pads itself
        model = lambda array: _torch_run(module, array)  # noqa: E731
    else:
        raise ValueError(f"unknown export format {format!r}; known: {', '.join(FORMATS)}")

    def run(array: np.ndarray) -> np.ndarray:
        array = np.asarray(array, dtype=np.float32)
        sizes = array.shape[2:]
        pads = [(0, 0), (0, 0)] + [(0, (-s) % divisor) for s in sizes]
        padded = np.pad(array, pads) if any(p for _, p in pads) else array
        logits = np.concatenate([model(padded[i : i + 1]) for i in range(len(padded))])
        return logits[(slice(None), slice(None)) + tuple(slice(0, s) for s in sizes)]

    return run


def _torch_run(module: Callable, array: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.as_tensor(np.ascontiguousarray(array))).numpy()


def parity(
    network: torch.nn.Module, path: str, format: str, shapes: Sequence[Tuple[int, ...]], seed: int = 0
) -> Dict[str, float]:
    """The export against ``network`` on random inputs of ``shapes``: ``max_abs`` (largest |logit difference|),
    ``max_logit`` (largest |logit|) and ``within`` (every logit within ``PARITY_TOLERANCE + 1e-5 |logit|``: float32
    kernels of different runtimes round differently, about 1e-6 of the logit's size)."""
    exported = load_exported(path, format)
    generator = torch.Generator().manual_seed(seed)
    worst, largest, within = 0.0, 0.0, True
    network = network.eval()
    for shape in shapes:
        image = torch.randn(shape, generator=generator)
        with torch.no_grad():
            expected = network(image).numpy()
        got = exported(image.numpy())
        if got.shape != expected.shape:
            raise AssertionError(
                f"{path}: output shape {got.shape} for input {tuple(shape)}, the network gives {expected.shape}"
            )
        difference = np.abs(got - expected)
        worst, largest = max(worst, float(difference.max())), max(largest, float(np.abs(expected).max()))
        within = within and bool((difference <= PARITY_TOLERANCE + RELATIVE_TOLERANCE * np.abs(expected)).all())
    return {"max_abs": worst, "max_logit": largest, "within": within}


def export_main(argv: Optional[List[str]] = None) -> None:
    import argparse
    import sys

    from medseg_dropclass.engine.bundles import find_bundle, inference_parser, load_weights
    from medseg_dropclass.engine.checkpoints import CheckpointError
    from medseg_dropclass.engine.config_values import Expression

    parser = argparse.ArgumentParser(prog="python -m medseg_dropclass export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", required=True, help="a shipped bundle's name or a bundle folder")
    parser.add_argument("--format", choices=FORMATS, default="onnx")
    parser.add_argument("--ckpt", default=None, help="the network's checkpoint (default: the bundle's models/model.pt)")
    parser.add_argument(
        "--output",
        default=None,
        help="the exported file (default: <bundle>_model<suffix> in the current folder; nothing is written into the bundle unless asked)",
    )
    args = parser.parse_args(argv)
    root = find_bundle(args.bundle)
    checkpoint = pathlib.Path(args.ckpt) if args.ckpt else root / "models" / "model.pt"
    if not checkpoint.is_file():
        print(f"error: {checkpoint}: no such checkpoint (train the bundle or pass --ckpt)", file=sys.stderr)
        sys.exit(1)
    config = inference_parser(root, device=Expression("$torch.device('cpu')"))
    try:
        network = load_weights(config.get_parsed_content("network_def"), checkpoint)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    meta = config.get("_meta_#network_data_format#inputs#image")
    shape = (1, int(meta["num_channels"]), *[int(s) for s in meta["spatial_shape"]])
    output = pathlib.Path(args.output) if args.output else pathlib.Path(f"{root.name}_model{SUFFIXES[args.format]}")
    export_network(network, torch.zeros(shape), str(output), args.format)
    smaller = (2, shape[1], *[max(16, s // 2 + 3) for s in shape[2:]])
    check = parity(network, str(output), args.format, [shape, smaller])
    print(
        f"wrote {output} ({args.format}); against {checkpoint.name} on inputs {shape} and {smaller}: max |logit difference| "
        f"{check['max_abs']:.2e} for logits up to {check['max_logit']:.1f} "
        f"({'within' if check['within'] else 'OUTSIDE'} {PARITY_TOLERANCE:g} + {RELATIVE_TOLERANCE:g} |logit|)"
    )
    if not check["within"]:
        sys.exit(1)
