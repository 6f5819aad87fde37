"""Dataset-level (pooled) IoU of a study: the street-scene convention (CamVid, Cityscapes), where a class's IoU is
``sum TP / sum (TP + FP + FN)`` over all images of a split, not the mean of per-image IoUs.

Intervals follow docs/STUDY_DESIGN.md: seeds and images are crossed (every seed's network is scored on the same
images); the seed part comes from the per-seed pooled IoUs, the image part from resampling the image set (one draw
shared by every seed and both arms) and recomputing the pooled IoU from the resampled images' counts (a per-image
ratio would weight a 20-pixel pole like a whole road). Reads what :func:`medseg_dropclass.study.compare.run_study` collects; every per-image
``TP``/``FP``/``FN`` count is already in each run's ``summary.json``.
"""

import pathlib
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np

from medseg_dropclass.evaluation.figures import save_figure
from medseg_dropclass.evaluation.metrics import iou_from_counts
from medseg_dropclass.study.formatting import FLOOR_MARK, FLOOR_NOTE, p_text
from medseg_dropclass.study.formatting import interval_text as _interval_text
from medseg_dropclass.study.report import (
    case_clusters,
    finished_arms,
    finished_seeds,
    held_out_lines,
    reference_arm,
    seed_cases,
    study_seeds,
    write_difference_figure,
)
from medseg_dropclass.study.statistics import Estimate, _quiet, crossed_estimate, holm, sign_flip_floor

if TYPE_CHECKING:  # the Grad-CAM figure's annotations only; torch is imported where it runs
    import torch

__all__ = [
    "case_counts",
    "pooled_iou",
    "endpoint_classes",
    "pooled_per_class",
    "pooled_endpoint",
    "pooled_differences",
    "pair_similarity",
    "write_pooled_report",
    "write_gain_figure",
    "write_similarity_figure",
    "write_gradcam_comparison",
]

COUNTS = ("TP", "FP", "FN")


def case_counts(results: dict, arm: str, split: str, seeds: Optional[Sequence[int]] = None) -> np.ndarray:
    """``(S, N, K, 3)`` per-image TP, FP, FN of each class for ``seeds`` (default: the arm's finished seeds)."""
    names = results["class_names"]
    rows = [
        [[[case["metrics"][n][c] for c in COUNTS] for n in names] for case in cases]
        for cases in seed_cases(results, arm, split, seeds)
    ]
    return np.asarray(rows, dtype=np.float64)


def pooled_iou(counts: np.ndarray) -> np.ndarray:
    """``(S, N, K, 3)`` counts -> ``(S, K)`` each seed's pooled IoU (NaN: class never in the reference nor the
    prediction of a seed)."""
    total = counts.sum(axis=1)  # (S, K, 3, ...)
    return iou_from_counts(total[:, :, 0], total[:, :, 1], total[:, :, 2])


def endpoint_classes(results: dict) -> List[int]:
    """The endpoint's classes by index (``results["endpoint_classes"]``, named before the runs)."""
    if not results.get("endpoint_classes"):
        raise ValueError(
            "the pooled-IoU report needs the endpoint's classes named before the runs (compare --endpoint-classes ...)"
        )
    return [results["class_names"].index(name) for name in results["endpoint_classes"]]


def _with_means(iou: np.ndarray, endpoint: Sequence[int]) -> np.ndarray:
    """``(S, K)`` -> ``(S, K + 2)``: per class, then mean IoU over all classes (mIoU), then over the endpoint's."""
    with np.errstate(all="ignore"), _quiet():
        return np.concatenate(
            [iou, np.nanmean(iou, axis=1, keepdims=True), np.nanmean(iou[:, list(endpoint)], axis=1, keepdims=True)],
            axis=1,
        )


def pooled_per_class(
    results: dict,
    arm: str,
    split: str,
    n_resamples: int = 2000,
    seeds: Optional[Sequence[int]] = None,
    reference: Optional[str] = None,
) -> Estimate:
    """Pooled IoU of ``arm`` on ``split`` (or ``arm - reference``, paired by seed and image): ``(K + 2,)`` = per
    class, mIoU, endpoint mean; crossed seed x image intervals, on ``seeds`` (default: those both finished)."""
    endpoint = endpoint_classes(results)
    seeds = list(seeds) if seeds is not None else finished_seeds(results, arm, *([reference] if reference else []))
    other = {"s": case_counts(results, reference, split, seeds)} if reference else None
    return crossed_estimate(
        {"s": case_counts(results, arm, split, seeds)},
        lambda v: _with_means(pooled_iou(v["s"]), endpoint),
        reference=other,
        clusters={"s": case_clusters(results, arm, split, seeds)},
        n_resamples=n_resamples,
    )


def pooled_differences(
    results: dict, arm: str, reference: str, split: str, n_resamples: int = 2000, seeds: Optional[Sequence[int]] = None
) -> Estimate:
    """``arm - reference`` pooled IoU, ``(K + 2,)`` as :func:`pooled_per_class`: the difference of the two arms' own
    pooled IoUs on the same seeds (each resample draws the same seeds and images for both)."""
    return pooled_per_class(results, arm, split, n_resamples, seeds, reference)


def pooled_endpoint(
    results: dict, arms: Sequence[str], split: str, n_resamples: int = 2000, seeds: Optional[Sequence[int]] = None
) -> Dict[str, dict]:
    """Per arm: its endpoint (mean pooled IoU of the endpoint's classes) and its difference from its compared arm,
    with the difference's p-value (floored at the seed count's) Holm-adjusted over the compared arms; on ``seeds``
    (default: those every arm finished)."""
    seeds = study_seeds(results, arms) if seeds is None else list(seeds)
    out: Dict[str, dict] = {}
    for arm in arms:
        own = pooled_per_class(results, arm, split, n_resamples, seeds)
        entry = {"own": own, "reference": None, "difference": None, "p_holm": float("nan")}
        reference = reference_arm(results, arm)
        if reference != arm:
            entry["reference"] = reference
            entry["difference"] = pooled_differences(results, arm, reference, split, n_resamples, seeds)
        out[arm] = entry
    compared = [a for a in arms if out[a]["difference"] is not None]
    for arm, p in zip(compared, holm([out[a]["difference"].p_reported[-1] for a in compared])):
        out[arm]["p_holm"] = float(p)
    return out


def pair_similarity(results: dict, arm: str, pairs: Sequence[Tuple[str, str]]) -> np.ndarray:
    """``(S, P)`` classifier-weight cosine similarity of each class pair in each finished seed of ``arm``."""
    names = results["class_names"]
    rows = []
    for seed in finished_seeds(results, arm):
        matrix = np.asarray(results["arms"][arm]["seeds"][str(seed)]["similarity"]["matrix"])
        rows.append([matrix[names.index(a), names.index(b)] for a, b in pairs])
    return np.asarray(rows, dtype=np.float64)


def _interval(result: Estimate, index: int, scale: float = 100.0, signed: bool = False) -> str:
    """IoU in percent with one decimal."""
    return _interval_text(result, index, digits=1, scale=scale, signed=signed)


def _budget_text(results: dict, arms: Sequence[str]) -> str:
    """``"40 epochs"``, or ``"budget 1x = 40 epochs (baseline_2x: 2x)"`` where an arm trains another budget."""
    other = [f"{a}: {results['arms'][a]['budget']}x" for a in arms if results["arms"][a].get("budget", 1) != 1]
    return (
        f"budget 1x = {results['max_epochs']} epochs ({', '.join(other)})"
        if other
        else f"{results['max_epochs']} epochs"
    )


def write_pooled_report(
    results: dict,
    output_dir: str,
    pairs: Sequence[Tuple[str, str]] = (),
    n_resamples: int = 2000,
    contrasts: Sequence[Tuple[str, str]] = (),
) -> pathlib.Path:
    """``report_pooled_iou.md`` (and ``iou_gain_vs_share.png``) in ``output_dir``: pooled IoU per class, mIoU and the
    endpoint per arm and split, differences from the compared arm, classifier similarity of ``pairs``; returns its path.

    ``contrasts``: further ``(arm, other arm)`` differences (secondary, not in the Holm family), e.g. DropClass
    against the head-only control."""
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    names, share, splits = results["class_names"], results["class_share"], results["splits"]
    arms = finished_arms(results)
    endpoint = endpoint_classes(results)
    endpoint_text = ", ".join(f"{names[k]} {100 * share[k]:.2f}%" for k in endpoint)
    common = study_seeds(results, arms)
    lines = [
        "# Pooled IoU per class (dataset-level, the street-scene convention)",
        "",
        f"Bundle `{results['bundle']}`, {_budget_text(results, arms)}, networks of the last epoch; "
        f"{len(common)} seed(s) finished by every arm ({', '.join(map(str, common))}). IoU of a class = sum TP / sum "
        "(TP + FP + FN) over the split's images, per seed, then the mean over seeds; in percent. Intervals: 95%, seeds and "
        "images crossed: seed variance (t over seeds) plus image-set variance (bootstrap, the pooled IoU recomputed from "
        "the resampled images), Welch-Satterthwaite degrees of freedom (docs/STUDY_DESIGN.md). Differences are "
        "differences of the two arms' own pooled IoUs on the same seeds and images.",
        "",
        f"**Primary endpoint** (named before the runs): the mean pooled IoU of {endpoint_text} (training pixel shares) "
        f"on `{splits[0]}`, each arm minus its compared arm; p: t with the interval's degrees of freedom, never below what "
        f"{len(common)} seeds can support ({sign_flip_floor(len(common)):.3g}: an exact sign-flip test's smallest p), "
        "Holm-adjusted over the compared arms.",
        "",
    ]
    lines += held_out_lines(results)
    endpoints: Dict[str, Dict[str, dict]] = {
        split: pooled_endpoint(results, arms, split, n_resamples, common) for split in splits
    }
    for split in splits:
        rows = endpoints[split]
        lines += [
            f"## Split `{split}`",
            "",
            "| arm | mIoU | endpoint (5 rarest) | endpoint minus compared arm | p (Holm) |",
            "|---|---:|---:|---:|---:|",
        ]
        for arm in arms:
            entry = rows[arm]
            difference = entry["difference"]
            compared = (
                f"{_interval(difference, -1, signed=True)} vs `{entry['reference']}`" if difference is not None else "-"
            )
            floor = difference.p_floor if difference is not None else None
            lines.append(
                f"| {arm} | {_interval(entry['own'], -2)} | {_interval(entry['own'], -1)} | {compared} | {p_text(entry['p_holm'], floor)} |"
            )
        lines += ["", "| class | share | " + " | ".join(arms) + " |", "|---|---:|" + "---:|" * len(arms)]
        for k in np.argsort(share)[::-1]:
            lines.append(
                f"| {names[k]} | {100 * share[k]:.2f}% | "
                + " | ".join(_interval(rows[a]["own"], int(k)) for a in arms)
                + " |"
            )
        compared_arms = [a for a in arms if rows[a]["difference"] is not None]
        if compared_arms:
            lines += [
                "",
                f"Difference from the compared arm, per class (paired by seed and image; p Holm-adjusted over the {len(names)} classes of each arm):",
                "",
            ]
            lines += [
                "| class | share | " + " | ".join(f"{a} - {rows[a]['reference']}" for a in compared_arms) + " |",
                "|---|---:|" + "---:|" * len(compared_arms),
            ]
            adjusted = {a: holm(rows[a]["difference"].p_reported[: len(names)]) for a in compared_arms}
            for k in np.argsort(share)[::-1]:
                cells = [
                    f"{_interval(rows[a]['difference'], int(k), signed=True)} (p {p_text(adjusted[a][k], rows[a]['difference'].p_floor)})"
                    for a in compared_arms
                ]
                lines.append(f"| {names[k]} | {100 * share[k]:.2f}% | " + " | ".join(cells) + " |")
        shown = [(a, b) for a, b in contrasts if a in arms and b in arms]
        if shown:
            lines += [
                "",
                "Secondary contrasts (paired by seed and image, unadjusted p):",
                "",
                "| contrast | mIoU | endpoint | " + " | ".join(names[k] for k in endpoint) + " |",
                "|---|---:|---:|" + "---:|" * len(endpoint),
            ]
            for a, b in shown:
                result = pooled_differences(results, a, b, split, n_resamples, common)
                cells = [
                    _interval(result, -2, signed=True),
                    f"{_interval(result, -1, signed=True)} (p {p_text(result.p_reported[-1], result.p_floor)})",
                ]
                cells += [_interval(result, k, signed=True) for k in endpoint]
                lines.append(f"| {a} - {b} | " + " | ".join(cells) + " |")
        lines.append("")
    differences = {
        (a, s): endpoints[s][a]["difference"] for s in splits for a in arms if endpoints[s][a]["difference"] is not None
    }
    if differences:
        figure = write_gain_figure(results, differences, out / "iou_gain_vs_share.png")
        lines += [f"![per-class pooled IoU difference with 95% intervals against class share]({figure.name})", ""]
    if pairs:
        lines += [
            "## Classifier-weight cosine similarity of co-occurring classes",
            "",
            "Cosine similarity of the final 1x1 classifier's weight vectors (the paper's entanglement measure), mean over "
            "seeds [lowest, highest seed]. Lower: the classes are told apart by more different features.",
            "",
            "| pair | " + " | ".join(arms) + " |",
            "|---|" + "---:|" * len(arms),
        ]
        values = {a: pair_similarity(results, a, pairs) for a in arms}
        for p, (first, second) in enumerate(pairs):
            cells = [
                f"{values[a][:, p].mean():+.2f} [{values[a][:, p].min():+.2f}, {values[a][:, p].max():+.2f}]"
                for a in arms
            ]
            lines.append(f"| {first} - {second} | " + " | ".join(cells) + " |")
        means = {
            a: np.mean(
                [
                    results["arms"][a]["seeds"][str(s)]["similarity"]["mean_off_diagonal"]
                    for s in finished_seeds(results, a)
                ]
            )
            for a in arms
        }
        lines.append("| *all pairs (mean off-diagonal)* | " + " | ".join(f"{means[a]:+.2f}" for a in arms) + " |")
        figure = write_similarity_figure(results, arms, out / "similarity_per_arm.png")
        lines += ["", f"![classifier-weight cosine similarity per arm, mean over seeds]({figure.name})", ""]
    if any(FLOOR_MARK in line for line in lines):
        lines += [FLOOR_NOTE, ""]
    path = out / "report_pooled_iou.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_gain_figure(results: dict, differences: Dict[Tuple[str, str], Estimate], path: pathlib.Path) -> pathlib.Path:
    """Per-class pooled IoU difference (points, 95% interval) against training pixel share, log axis, a panel per split."""
    classes = range(len(results["class_names"]))
    return write_difference_figure(
        results, differences, path, classes, scale=100.0, ylabel="pooled IoU difference, points (95% interval)"
    )


def write_similarity_figure(results: dict, arms: Sequence[str], path: pathlib.Path) -> pathlib.Path:
    """The ``(K, K)`` classifier-weight cosine similarity of each arm (mean over its seeds), a heatmap panel per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = results["class_names"]
    figure, axes = plt.subplots(1, len(arms), figsize=(4.2 * len(arms), 4.4), squeeze=False)
    for axis, arm in zip(axes[0], arms):
        seeds = finished_seeds(results, arm)
        matrix = np.mean(
            [np.asarray(results["arms"][arm]["seeds"][str(s)]["similarity"]["matrix"]) for s in seeds], axis=0
        )
        shown = axis.imshow(matrix, vmin=-1, vmax=1, cmap="coolwarm")
        axis.set_xticks(range(len(names)))
        axis.set_xticklabels(names, rotation=90, fontsize=7)
        axis.set_yticks(range(len(names)))
        axis.set_yticklabels(names, fontsize=7)
        axis.set_title(f"{arm} ({len(seeds)} seeds)", fontsize=9)
    figure.colorbar(shown, ax=list(axes[0]), fraction=0.02)
    return save_figure(figure, path, bbox_tight=True)


def write_gradcam_comparison(
    networks: Dict[str, "torch.nn.Module"],
    image: "torch.Tensor",
    label: np.ndarray,
    class_names: Sequence[str],
    classes: Sequence[int],
    path: pathlib.Path,
    display: Optional[np.ndarray] = None,
) -> pathlib.Path:
    """One PNG: per class a row (the image with the class's reference outline, then each network's Grad-CAM map).

    Args:
        networks: ``{arm: network}`` (eval mode).
        image: ``(C, H, W)`` network input; ``label``: ``(H, W)`` reference classes.
        display: ``(H, W, 3)`` image in ``[0, 1]`` to draw (default: the input's channels, min-max scaled).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medseg_dropclass.evaluation.gradcam import class_gradcam

    if display is None:
        shown = image.detach().float().cpu().numpy()
        shown = np.moveaxis(shown[:3] if shown.shape[0] >= 3 else np.repeat(shown[:1], 3, 0), 0, -1)
        display = (shown - shown.min()) / max(float(shown.max() - shown.min()), 1e-8)
    columns = len(networks) + 1
    figure, axes = plt.subplots(len(classes), columns, figsize=(3.2 * columns, 2.6 * len(classes)), squeeze=False)
    for row, k in zip(axes, classes):
        row[0].imshow(display)
        row[0].contour(label == k, levels=[0.5], colors="yellow", linewidths=0.8)
        row[0].set_title(f"{class_names[k]}: reference (yellow)", fontsize=8)
        for axis, (arm, network) in zip(row[1:], networks.items()):
            cam = class_gradcam(network, image, int(k)).cpu().numpy()
            axis.imshow(display)
            axis.imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
            axis.contour(label == k, levels=[0.5], colors="white", linewidths=0.6)
            axis.set_title(f"{arm}: Grad-CAM {class_names[k]}", fontsize=8)
    for axis in axes.ravel():
        axis.axis("off")
    return save_figure(figure, path)
