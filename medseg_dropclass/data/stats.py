"""Per-class pixel/voxel share of a dataset's training labels: CSV, markdown and a log-scale bar chart."""

import csv
import pathlib
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import torch
from tqdm import tqdm

from medseg_dropclass.data.transforms import DatasetError, source_name
from medseg_dropclass.evaluation.figures import save_figure
from medseg_dropclass.validation import check_label_values

__all__ = ["count_classes", "class_share", "neighbour_cooccurrence", "host_weights", "decathlon_class_counts", "class_table", "write_class_statistics", "RARE", "VERY_RARE"]

RARE, VERY_RARE = 0.01, 0.001


def count_classes(
    items: Iterable[Mapping], load_label: Callable[[Mapping], Mapping], num_classes: int, ignore_index: Optional[int] = None,
    progress: bool = True,
) -> Dict[str, object]:
    """Voxel count of every class over a datalist.

    Args:
        items: datalist entries (``{"image": ..., "label": ...}``).
        load_label: transform that turns an entry into a dict whose ``"label"`` is the loaded label.
        num_classes: classes ``K``.
        ignore_index: a value counted apart, not as a class.

    Returns:
        ``{"counts": (K,) long tensor, "ignored": int, "cases": int}``.

    Raises:
        DatasetError: a label value outside ``0..K-1`` (and not ``ignore_index``), naming the file.
    """
    counts = torch.zeros(num_classes, dtype=torch.long)
    ignored, cases = 0, 0
    items = list(items)
    for item in tqdm(items, desc="class statistics", disable=not progress):
        loaded = load_label(item)
        label = torch.as_tensor(loaded["label"]).long().reshape(-1)
        if ignore_index is not None:
            keep = label != ignore_index
            ignored += int((~keep).sum())
            label = label[keep]
        if label.numel() and (label.min() < 0 or label.max() >= num_classes):
            check_label_values(label.unique(), num_classes, None, source_name(loaded, "label"), DatasetError)
        counts += torch.bincount(label, minlength=num_classes)
        cases += 1
    return {"counts": counts, "ignored": ignored, "cases": cases}


def decathlon_class_counts(dataset_json, split: str = "training", progress: bool = False) -> Dict[str, object]:
    """:func:`count_classes` over a Decathlon split's label files (as stored, no resampling)."""
    from monai.transforms import Compose, LoadImaged

    from medseg_dropclass.data.decathlon import decathlon_datalist, read_dataset_json

    info = read_dataset_json(dataset_json)
    loader = Compose([LoadImaged("label", image_only=True)])
    return count_classes(decathlon_datalist(info.path, split), loader, info.num_classes, progress=progress)


def class_share(
    datalist: Sequence[Mapping], load_label: Callable[[Mapping], Mapping], num_classes: int, ignore_index: Optional[int] = None
) -> List[float]:
    """Share of each class in the labelled pixels of ``datalist`` (``load_label``: e.g. a preprocessing's ``"label"`` stage)."""
    counts = count_classes(datalist, load_label, num_classes, ignore_index, progress=False)["counts"].double()
    return (counts / counts.sum().clamp_min(1)).tolist()


def class_table(counts: torch.Tensor, class_names: Sequence[str]) -> List[Dict[str, object]]:
    """Rows ``{class_id, name, voxels, share, flag}``; flag ``"<0.1%"``, ``"<1%"`` or empty."""
    total = max(int(counts.sum()), 1)
    rows = []
    for k, name in enumerate(class_names):
        share = int(counts[k]) / total
        flag = "<0.1%" if share < VERY_RARE else "<1%" if share < RARE else ""
        rows.append({"class_id": k, "name": name, "voxels": int(counts[k]), "share": share, "flag": flag})
    return rows


def write_class_statistics(rows: List[Dict[str, object]], output_dir: str, title: str) -> Dict[str, pathlib.Path]:
    """Write ``class_stats.csv``, ``class_stats.md`` and ``class_stats.png`` (log-scale shares)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "class_stats.csv", "markdown": out / "class_stats.md", "png": out / "class_stats.png"}
    with paths["csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["class_id", "name", "voxels", "share", "flag"])
        writer.writeheader()
        writer.writerows(rows)
    rare = sum(1 for r in rows if r["share"] < RARE)
    very_rare = sum(1 for r in rows if r["share"] < VERY_RARE)
    lines = [
        f"# Class statistics: {title}",
        "",
        f"{len(rows)} classes; {rare} cover < 1% of the voxels, {very_rare} cover < 0.1%.",
        "",
        "| id | class | voxels | share | flag |",
        "|---:|---|---:|---:|---|",
    ]
    lines += [f"| {r['class_id']} | {r['name']} | {r['voxels']} | {100 * r['share']:.4f}% | {r['flag']} |" for r in rows]
    paths["markdown"].write_text("\n".join(lines) + "\n")

    shares = [max(r["share"], 1e-9) for r in rows]
    colours = ["#c0392b" if r["share"] < VERY_RARE else "#e67e22" if r["share"] < RARE else "#2e86c1" for r in rows]
    figure, axis = plt.subplots(figsize=(max(6, 0.35 * len(rows) + 2), 4))
    axis.bar(range(len(rows)), [100 * s for s in shares], color=colours)
    axis.set_yscale("log")
    axis.axhline(100 * RARE, color="#e67e22", linestyle="--", linewidth=1, label="1%")
    axis.axhline(100 * VERY_RARE, color="#c0392b", linestyle="--", linewidth=1, label="0.1%")
    axis.set_xticks(range(len(rows)))
    axis.set_xticklabels([str(r["name"]) for r in rows], rotation=60, ha="right", fontsize=8)
    axis.set_ylabel("share of labelled voxels (%)")
    axis.set_title(title)
    axis.legend()
    save_figure(figure, paths["png"], dpi=100)
    return paths


def neighbour_cooccurrence(
    items: Iterable[Mapping], load_label: Callable[[Mapping], Mapping], num_classes: int, classes: Sequence[int],
    radius: int = 3, ignore_index: Optional[int] = None, progress: bool = False,
) -> torch.Tensor:
    """How often each class surrounds the given (rare) classes: for every class ``r`` in ``classes``,
    the share of each class ``k`` among the voxels within ``radius`` of ``r`` (outside ``r`` itself),
    pooled over the datalist.

    Dropping the class that surrounds a lesion (its host organ) is what forces the network to find the
    lesion without its context, so ``row.sum(0)`` over the rare classes makes DropClass sampler
    weights (``DropClassSampler(mode="weighted")``).

    Returns:
        ``(len(classes), K)`` float64 tensor; rows sum to 1 (0 for a class never present).
    """
    from torch.nn import functional as F

    table = torch.zeros(len(classes), num_classes, dtype=torch.float64)
    for item in tqdm(list(items), desc="neighbours", disable=not progress):
        loaded = load_label(item)
        label = torch.as_tensor(loaded["label"]).long()
        label = label[0] if label.ndim > 2 and label.shape[0] == 1 else label
        pool = F.max_pool2d if label.ndim == 2 else F.max_pool3d
        for row, r in enumerate(classes):
            mask = (label == r).to(torch.float32)
            if not mask.any():
                continue
            near = pool(mask[None, None], 2 * radius + 1, stride=1, padding=radius)[0, 0] > 0
            around = label[near & (mask == 0)]
            if ignore_index is not None:
                around = around[around != ignore_index]
            table[row] += torch.bincount(around.clamp(0, num_classes - 1), minlength=num_classes).double()
    totals = table.sum(1, keepdim=True)
    return torch.where(totals > 0, table / totals.clamp(min=1), table)


def host_weights(
    items: Iterable[Mapping], load_label: Callable[[Mapping], Mapping], share: Sequence[float], rare_below: float = RARE,
    radius: int = 3, ignore_index: Optional[int] = None,
) -> List[float]:
    """DropClass sampler weights ``(K,)``: how much of the surroundings of the rare classes (share below
    ``rare_below``) each class makes up, summed over the rare classes; a rare class itself gets 0.

    Raises:
        ValueError: no class is rare (nothing to take the surroundings of).
    """
    rare = [k for k, s in enumerate(share) if 0 < s < rare_below]
    if not rare:
        raise ValueError(f"no class has a share below {rare_below} (shares {[round(float(s), 5) for s in share]})")
    table = neighbour_cooccurrence(items, load_label, len(share), rare, radius, ignore_index)
    weights = table.sum(0)
    weights[rare] = 0.0
    return [float(w) for w in weights]
