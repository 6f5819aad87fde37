"""Per-case evaluation of a trained network, written as an nnU-Net-style ``summary.json``."""

import json
import math
import pathlib
from typing import Dict, List, Optional, Sequence

import torch
from tqdm import tqdm

from medseg_dropclass.metrics import confusion_matrix, per_class_dice, per_class_iou

__all__ = ["FREQUENCY_BINS", "frequency_bin", "evaluate_cases", "summarize_cases", "write_summary"]

# (name, lower share inclusive, upper share exclusive) of the training pixels
FREQUENCY_BINS = (("<0.1%", 0.0, 0.001), ("0.1-1%", 0.001, 0.01), (">1%", 0.01, 1.01))


def frequency_bin(share: float) -> str:
    for name, low, high in FREQUENCY_BINS:
        if low <= share < high:
            return name
    raise ValueError(f"class share {share} is outside 0..1")


def _nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


@torch.no_grad()
def evaluate_cases(network: torch.nn.Module, dataset, num_classes: int, ignore_index: int = 255, progress: bool = False) -> List[dict]:
    """One entry per case: ``{"reference": label file, "confusion": (K, K) list}`` (rows = target)."""
    network.eval()
    cases = []
    for item in tqdm(dataset, desc="evaluate", disable=not progress):
        prediction = network(item["image"][None].as_tensor() if hasattr(item["image"], "as_tensor") else item["image"][None]).argmax(1)[0]
        label = torch.as_tensor(item["label"])[0]
        matrix = confusion_matrix(prediction, label, num_classes, ignore_index)
        meta = getattr(item["label"], "meta", {})
        cases.append({"reference": str(meta.get("filename_or_obj", len(cases))), "confusion": matrix.tolist()})
    return cases


def summarize_cases(cases: List[dict], class_names: Sequence[str], class_share: Optional[Sequence[float]] = None) -> dict:
    """nnU-Net-style summary: per-case and mean per-class Dice/IoU, foreground mean, frequency-bin means.

    A class absent from both the reference and the prediction of a case has no value for that case
    (NaN, left out of the means), as in nnU-Net. ``dataset`` metrics pool all cases into one
    confusion matrix.
    """
    names = list(class_names)
    per_case = []
    for case in cases:
        matrix = torch.tensor(case["confusion"])
        dice, iou = per_class_dice(matrix), per_class_iou(matrix)
        per_case.append(
            {
                "reference": case["reference"],
                "metrics": {n: {"Dice": float(dice[k]), "IoU": float(iou[k]), "n_ref": int(matrix[k].sum())} for k, n in enumerate(names)},
            }
        )
    mean = {n: {m: _nanmean([c["metrics"][n][m] for c in per_case]) for m in ("Dice", "IoU")} for n in names}
    pooled = torch.tensor([c["confusion"] for c in cases]).sum(0) if cases else torch.zeros(len(names), len(names), dtype=torch.long)
    dataset = {n: {"Dice": float(per_class_dice(pooled)[k]), "IoU": float(per_class_iou(pooled)[k])} for k, n in enumerate(names)}
    summary = {
        "metric_per_case": per_case,
        "mean": mean,
        "foreground_mean": {m: _nanmean([mean[n][m] for n in names[1:]]) for m in ("Dice", "IoU")},
        "dataset": dataset,
    }
    if class_share is not None:
        bins: Dict[str, Dict[str, float]] = {}
        for name, _, _ in FREQUENCY_BINS:
            members = [n for n, s in zip(names[1:], list(class_share)[1:]) if frequency_bin(s) == name]
            bins[name] = {m: _nanmean([mean[n][m] for n in members]) for m in ("Dice", "IoU")}
            bins[name]["classes"] = members
        summary["frequency_bins"] = bins
        summary["class_share"] = dict(zip(names, [float(s) for s in class_share]))
    return summary


def write_summary(summary: dict, path: str) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, allow_nan=True))
    return path
