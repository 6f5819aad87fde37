"""Baseline vs DropClass, side by side, per class, over seeds: ``python -m medseg_dropclass compare``.

Every arm is a bundle (``phantom2d_dropclass`` by default; any bundle folder with ``--bundle``) with a
few config overrides, trained in its own process (so its wall time and peak memory are its own), then
evaluated by the bundle's own ``evaluate`` config (the one evaluator: per case, nnU-Net semantics,
through the bundle's inferer) on every labelled evaluation split of the dataset, with the network of
its last epoch (no checkpoint selection, so equal iterations mean equal iterations). The demo is this
command with two arms and one seed.
"""

import json
import math
import os
import pathlib
import random
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import torch

from medseg_dropclass.engine.bundles import config_files, find_bundle, run_bundle
from medseg_dropclass.engine.checkpoints import latest_checkpoint
from medseg_dropclass.metrics import FREQUENCY_BINS
from medseg_dropclass.similarity import class_weight_similarity, save_similarity_heatmap, similarity_summary

__all__ = ["ARMS", "run_study", "evaluate_run", "evaluation_splits", "paired_sign_flip_test", "write_report"]

BUNDLE = "phantom2d_dropclass"

# name -> (description, config overrides, training-budget multiplier)
ARMS: Dict[str, tuple] = {
    "baseline": ("plain CE, same network", {"dropclass": False}, 1),
    "baseline_weighted_ce": (
        "class-weighted CE (1/sqrt(share))",
        {"dropclass": False, "loss#base_loss": {"_target_": "torch.nn.CrossEntropyLoss", "weight": "$torch.tensor(@class_weights)", "ignore_index": 255}},
        1,
    ),
    "baseline_dicece": (
        "Dice + CE",
        {"dropclass": False, "loss#base_loss": {"_target_": "medseg_dropclass.MaskedDiceCELoss", "ignore_index": 255}},
        1,
    ),
    "dropclass": ("paper: alpha 10, p linear to 1, uniform z, projection inference", {"alpha": 10.0}, 1),
    "dropclass_alpha1": ("alpha 1", {"alpha": 1.0}, 1),
    "dropclass_alpha0.1": ("alpha 0.1", {"alpha": 0.1}, 1),
    "dropclass_capped": ("alpha 10, p linear capped at 0.5", {"alpha": 10.0, "schedule": {"_target_": "medseg_dropclass.CappedLinearSchedule", "max_value": 0.5}}, 1),
    "dropclass_present": ("alpha 10, z from the classes present in the batch", {"alpha": 10.0, "sampling": "present"}, 1),
    "dropclass_classifier_path": ("alpha 10, inference through the main classifier", {"alpha": 10.0, "network_def#inference_path": "classifier"}, 1),
    "dropclass_2x": ("paper, twice the baseline's iterations (the paper's budget)", {"alpha": 10.0}, 2),
    "dropclass_alpha1_weighted_ce": (
        "alpha 1 over the class-weighted CE base",
        {"alpha": 1.0, "loss#base_loss": {"_target_": "torch.nn.CrossEntropyLoss", "weight": "$torch.tensor(@class_weights)", "ignore_index": 255}},
        1,
    ),
}


def class_weights(share: Sequence[float]) -> List[float]:
    """Inverse square root of the class share, normalised to mean 1."""
    raw = [1.0 / math.sqrt(max(s, 1e-6)) for s in share]
    mean = sum(raw) / len(raw)
    return [w / mean for w in raw]


def evaluation_splits(dataset_json: pathlib.Path) -> List[str]:
    """The labelled splits of a ``dataset.json`` besides ``training``; ``["validation"]`` (held out of
    training by the bundle) when there is none (an MSD task's ``test`` has no labels)."""
    content = json.loads(pathlib.Path(dataset_json).read_text())
    splits = [
        name for name, entries in content.items()
        if name != "training" and isinstance(entries, list) and entries and all(isinstance(e, dict) and "label" in e for e in entries)
    ]
    return splits or ["validation"]


def train_arm(bundle: str, overrides: dict, output_dir: pathlib.Path) -> Dict[str, float]:
    """Train one arm in a child process; return its wall time (s) and peak resident memory (MiB)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    args_file = output_dir / "args.json"
    args_file.write_text(json.dumps({**overrides, "output_dir": str(output_dir / "run")}))
    log = (output_dir / "train.log").open("w")
    command = [sys.executable, "-m", "medseg_dropclass", "run", str(bundle), "train", "--args_file", str(args_file)]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    if process.returncode != 0:
        tail = (output_dir / "train.log").read_text()[-2000:]
        raise RuntimeError(f"training {output_dir} failed (exit {process.returncode}):\n{tail}")
    return {"seconds": seconds, "peak_memory_mib": usage.ru_maxrss / 1024.0}


def evaluate_run(bundle: str, overrides: dict, checkpoint: str, split: str, eval_dir: pathlib.Path) -> dict:
    """The bundle's ``evaluate`` config on one split with ``checkpoint``; returns its ``summary.json``."""
    run_bundle(bundle, "evaluate", **overrides, ckpt_path=str(checkpoint), eval_split=split, eval_dir=str(eval_dir))
    return json.loads((eval_dir / "summary.json").read_text())


def final_checkpoint(run_dir: pathlib.Path) -> str:
    checkpoint = latest_checkpoint(str(run_dir / "checkpoints"))
    if checkpoint is None:
        raise FileNotFoundError(f"no checkpoint_epoch=*.pt under {run_dir / 'checkpoints'}")
    return checkpoint


def bundle_parser(bundle: str, overrides: dict):
    """A ``ConfigParser`` of the bundle's train configs with ``overrides`` on CPU (nothing instantiated yet)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_files(bundle, "train"))
    parser.update({**overrides, "device": "$torch.device('cpu')"})
    return parser


def load_final_network(parser, run_dir: pathlib.Path) -> torch.nn.Module:
    """The network of ``parser`` with the weights of the last epoch checkpoint under ``run_dir``, in eval mode."""
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(final_checkpoint(run_dir), map_location="cpu", weights_only=False)["network"])
    return network.eval()


def paired_sign_flip_test(differences: Sequence[float], permutations: int = 20000, seed: int = 0) -> float:
    """Two-sided p-value of mean(differences) = 0 by sign flipping (exact for n <= 16)."""
    values = [d for d in differences if not math.isnan(d)]
    n = len(values)
    if n == 0:
        return float("nan")
    observed = abs(sum(values)) / n
    if observed == 0:
        return 1.0
    if n <= 16:
        count = total = 0
        for mask in range(1 << n):
            flipped = sum(-v if mask >> i & 1 else v for i, v in enumerate(values))
            count += abs(flipped) / n >= observed - 1e-12
            total += 1
        return count / total
    rng = random.Random(seed)
    count = sum(abs(sum(v if rng.random() < 0.5 else -v for v in values)) / n >= observed - 1e-12 for _ in range(permutations))
    return (count + 1) / (permutations + 1)


def run_study(
    output_dir: str,
    arms: Sequence[str],
    seeds: Sequence[int],
    max_epochs: int,
    dataset_dir: Optional[str] = None,
    bundle: str = BUNDLE,
    extra_overrides: Optional[dict] = None,
) -> dict:
    """Train and evaluate every arm for every seed; write summaries and return the collected results."""
    from medseg_dropclass.data import DEFAULT_2D, decathlon_class_counts, make_phantom_dataset, read_dataset_json

    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; known: {', '.join(ARMS)}")
    bundle = str(find_bundle(bundle))
    out = pathlib.Path(output_dir).resolve()
    data = pathlib.Path(dataset_dir).resolve() if dataset_dir else out / "data" / "phantom2d"
    if dataset_dir is None and not (data / "dataset.json").is_file():
        make_phantom_dataset(str(data), DEFAULT_2D, progress=False)
    info = read_dataset_json(data)
    counts = decathlon_class_counts(info.path)["counts"]
    share = (counts / counts.sum()).tolist()
    splits = evaluation_splits(info.path)
    val_interval = max(1, max_epochs // 4)
    results: dict = {
        "bundle": pathlib.Path(bundle).name, "class_names": info.class_names, "class_share": share, "splits": splits,
        "arms": {}, "max_epochs": max_epochs, "seeds": list(seeds),
    }
    for arm in arms:
        description, overrides, multiplier = ARMS[arm]
        results["arms"][arm] = {"description": description, "seeds": {}}
        for seed in seeds:
            epochs = max_epochs * multiplier
            full = {
                "dataset_dir": str(data), "seed": seed, "max_epochs": epochs, "val_interval": val_interval * multiplier,
                "class_weights": class_weights(share), **(extra_overrides or {}), **overrides,
            }
            arm_dir = out / arm / f"seed{seed}"
            print(f"[{arm} seed {seed}] training {epochs} epochs", flush=True)
            cost = train_arm(bundle, full, arm_dir)
            checkpoint = final_checkpoint(arm_dir / "run")
            evaluated = {**full, "output_dir": str(arm_dir / "run"), "class_share": share}
            entry = {"cost": cost, "summaries": {}}
            for split in splits:
                entry["summaries"][split] = evaluate_run(bundle, evaluated, checkpoint, split, arm_dir / f"eval_{split}")
            state = torch.load(checkpoint, map_location="cpu", weights_only=False)["network"]
            weight = next(v for k, v in state.items() if k.endswith("head.classifier.weight"))
            similarity = class_weight_similarity(weight)
            entry["similarity"] = {"matrix": similarity.tolist(), **similarity_summary(similarity, share)}
            (arm_dir / "result.json").write_text(json.dumps(entry, indent=2))
            results["arms"][arm]["seeds"][seed] = entry
            first = splits[0]
            print(f"[{arm} seed {seed}] {cost['seconds']:.0f} s, peak {cost['peak_memory_mib']:.0f} MiB, "
                  f"foreground Dice {entry['summaries'][first]['foreground_mean']['Dice']:.3f} ({first})", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


def _stats(values: List[float]) -> tuple:
    kept = [v for v in values if not math.isnan(v)]
    if not kept:
        return float("nan"), float("nan")
    mean = sum(kept) / len(kept)
    std = math.sqrt(sum((v - mean) ** 2 for v in kept) / (len(kept) - 1)) if len(kept) > 1 else 0.0
    return mean, std


def _per_class(results: dict, arm: str, split: str, metric: str) -> Dict[str, List[float]]:
    names = results["class_names"]
    seeds = results["arms"][arm]["seeds"].values()
    return {n: [s["summaries"][split]["mean"][n][metric] for s in seeds] for n in names}


def _paired_differences(results: dict, arm: str, reference: str, split: str, name: str, metric: str = "Dice") -> List[float]:
    differences = []
    for seed, entry in results["arms"][arm]["seeds"].items():
        base = results["arms"][reference]["seeds"].get(seed)
        if base is None:
            continue
        for case, case_ref in zip(entry["summaries"][split]["metric_per_case"], base["summaries"][split]["metric_per_case"]):
            differences.append(case["metrics"][name][metric] - case_ref["metrics"][name][metric])
    return differences


def write_report(results: dict, output_dir: str, reference: str = "baseline") -> pathlib.Path:
    """Markdown report + PNG (per-class delta IoU against class frequency) from :func:`run_study`'s results."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = pathlib.Path(output_dir)
    names, share = results["class_names"], results["class_share"]
    arms = list(results["arms"])
    lines = [
        "# Baseline vs DropClass, per class",
        "",
        f"{len(results['seeds'])} seeds ({', '.join(map(str, results['seeds']))}), {results['max_epochs']} epochs per arm "
        "(x2 for `_2x` arms); networks of the last epoch; mean +/- std over seeds of the per-case mean "
        "(a class absent from reference and prediction of a case is left out, as in nnU-Net).",
        "",
        "| arm | what | wall time (s) | peak memory (MiB) |",
        "|---|---|---:|---:|",
    ]
    for arm in arms:
        costs = [s["cost"] for s in results["arms"][arm]["seeds"].values()]
        t, _ = _stats([c["seconds"] for c in costs])
        m, _ = _stats([c["peak_memory_mib"] for c in costs])
        lines.append(f"| {arm} | {results['arms'][arm]['description']} | {t:.0f} | {m:.0f} |")
    splits = results["splits"]
    for split in splits:
        for metric in ("IoU", "Dice"):
            lines += ["", f"## {metric}, split `{split}`", ""]
            lines.append("| class | share | " + " | ".join(arms) + " |")
            lines.append("|---|---:|" + "---:|" * len(arms))
            table = {arm: _per_class(results, arm, split, metric) for arm in arms}
            for k, name in enumerate(names):
                cells = []
                for arm in arms:
                    mean, std = _stats(table[arm][name])
                    cells.append(f"{mean:.3f} +/- {std:.3f}")
                lines.append(f"| {name} | {100 * share[k]:.3f}% | " + " | ".join(cells) + " |")
            for bin_name, _, _ in FREQUENCY_BINS:
                cells = [
                    "{:.3f}".format(_stats([s["summaries"][split]["frequency_bins"][bin_name][metric] for s in results["arms"][a]["seeds"].values()])[0])
                    for a in arms
                ]
                lines.append(f"| *bin {bin_name}* | | " + " | ".join(cells) + " |")
    if reference in results["arms"]:
        lines += ["", f"## Paired test against `{reference}` (Dice per case, pairs over seeds x cases, sign-flip permutation)", ""]
        lines.append("| arm | split | class | mean delta Dice | pairs | p |")
        lines.append("|---|---|---|---:|---:|---:|")
        for arm in arms:
            if arm == reference:
                continue
            for split in splits:
                for name in names[1:]:
                    d = [v for v in _paired_differences(results, arm, reference, split, name) if not math.isnan(v)]
                    if not d:
                        continue
                    lines.append(f"| {arm} | {split} | {name} | {sum(d) / len(d):+.3f} | {len(d)} | {paired_sign_flip_test(d):.3g} |")
        figure, axes = plt.subplots(1, len(splits), figsize=(6 * len(splits), 4.5), sharey=True, squeeze=False)
        axes = axes[0]
        for axis, split in zip(axes, splits):
            base = _per_class(results, reference, split, "IoU")
            for arm in arms:
                if arm == reference:
                    continue
                deltas = [_stats(_per_class(results, arm, split, "IoU")[n])[0] - _stats(base[n])[0] for n in names]
                axis.plot([max(s, 1e-6) for s in share], deltas, "o", label=arm, alpha=0.8)
            axis.axhline(0, color="black", linewidth=0.8)
            axis.set_xscale("log")
            axis.set_xlabel("class share of training pixels")
            axis.set_title(split)
            for k, name in enumerate(names):
                axis.annotate(name, (max(share[k], 1e-6), 0), fontsize=6, rotation=60, alpha=0.6)
        axes[0].set_ylabel(f"IoU minus {reference} IoU (mean over seeds)")
        axes[-1].legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(out / "delta_iou_vs_frequency.png", dpi=100)
        plt.close(figure)
        lines += ["", "![per-class delta IoU against class frequency](delta_iou_vs_frequency.png)"]
    lines += ["", "## Classifier weight similarity (mean over seeds)", "", "| arm | most frequent class vs others | least frequent class vs others | mean off-diagonal |", "|---|---:|---:|---:|"]
    for arm in arms:
        sims = [s["similarity"] for s in results["arms"][arm]["seeds"].values()]
        cells = [f"{_stats([s[key] for s in sims])[0]:.3f}" for key in ("most_frequent_mean_similarity", "least_frequent_mean_similarity", "mean_off_diagonal")]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def write_figures(results: dict, output_dir: str) -> List[pathlib.Path]:
    """Similarity heatmap and Grad-CAM overlays (first case of the last evaluation split) per arm, first seed."""
    from medseg_dropclass.analysis.gradcam import save_gradcam_overlays

    out = pathlib.Path(output_dir)
    names = results["class_names"]
    bundle = results.get("bundle", BUNDLE)
    written = []
    for arm, entry in results["arms"].items():
        seed, first = next(iter(entry["seeds"].items()))
        matrix = torch.tensor(first["similarity"]["matrix"])
        written.append(pathlib.Path(save_similarity_heatmap(matrix, names, str(out / f"similarity_{arm}.png"), f"{arm}: class weight similarity")))
        arm_dir = out / arm / f"seed{seed}"
        overrides = json.loads((arm_dir / "args.json").read_text())
        parser = bundle_parser(bundle, overrides)
        network = load_final_network(parser, arm_dir / "run")
        split = results["splits"][-1]
        items = parser.get_parsed_content("val_datalist") if split == "validation" else parser.get_parsed_content("datalist")(split)
        sample = parser.get_parsed_content("preprocessing").transforms("inference")({"image": items[0]["image"]})
        written.append(save_gradcam_overlays(network, sample["image"].as_tensor(), names, str(out / f"gradcam_{arm}.png")))
    return written


def compare_main(argv: Optional[List[str]] = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m medseg_dropclass compare", description=__doc__)
    parser.add_argument("--arms", nargs="+", default=["baseline", "dropclass"], help=f"known: {', '.join(ARMS)}")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--output-dir", default="outputs/compare")
    parser.add_argument("--bundle", default=BUNDLE, help="a shipped bundle's name or a bundle folder (default: %(default)s)")
    parser.add_argument("--dataset-dir", default=None, help="a Decathlon-format dataset (default: the 2D phantoms)")
    parser.add_argument("--no-figures", action="store_true", help="skip the similarity heatmaps and Grad-CAM overlays")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.max_epochs < 1:
        parser.error("--seeds and --max-epochs must be >= 1")
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; known: {', '.join(ARMS)}")
    results = run_study(args.output_dir, args.arms, list(range(args.seeds)), args.max_epochs, args.dataset_dir, args.bundle)
    report = write_report(results, args.output_dir)
    if not args.no_figures:
        write_figures(results, args.output_dir)
    print(report.read_text())
    print(f"report: {report}")
