"""``python -m medseg_dropclass model-card``: a bundle's model card, its numbers filled from measurements, never by hand.

The card (``<bundle>/docs/model_card.md``) states the intended use (research; not for clinical decisions), the
model and its inputs (from ``metadata.json``), the training data's class shares, the shipped model's per-class Dice
and IoU on every labelled test split with 95% intervals (bootstrap over cases: one model), the same per arm of a
study (``results.json`` of ``compare``: crossed seed x case intervals), and the known failure modes
read off those numbers (the rare classes, the context shift) and what the evaluation did not cover.

    python -m medseg_dropclass model-card --bundle phantom2d_dropclass --evaluate
    python -m medseg_dropclass model-card --bundle acdc_dropclass --study docs/acdc_common/runs/results.json --study-arms baseline dropclass
"""

import datetime
import json
import math
import pathlib
import sys
from typing import List, Optional, Sequence

import numpy as np

__all__ = ["evaluate_model", "model_card", "write_model_card", "model_card_main"]

MODEL = "models/model.pt"


def evaluate_model(
    bundle: str, checkpoint: str, dataset_dir: Optional[str], splits: Optional[Sequence[str]], work_dir: str
) -> dict:
    """Evaluate ``checkpoint`` with the bundle's ``evaluate`` config on every labelled split (or ``splits``).

    Returns a ``results.json``-like dict with one arm, ``model``, of one seed, so the study's statistics apply."""
    from medseg_dropclass.data import decathlon_class_counts
    from medseg_dropclass.engine.bundles import bundle_parser
    from medseg_dropclass.study.compare import evaluate_run, evaluation_splits

    overrides = {"dataset_dir": str(pathlib.Path(dataset_dir).resolve())} if dataset_dir else {}
    parser = bundle_parser(bundle, overrides)
    info = parser.get_parsed_content("dataset_info")
    counts = decathlon_class_counts(info.path)["counts"]
    share = (counts / counts.sum()).tolist()
    chosen = list(splits) if splits else evaluation_splits(info.path)
    scored = {**overrides, "class_share": share, "validate#metric#hausdorff95": True}  # HD95 too, for the card
    summaries = {
        split: evaluate_run(bundle, scored, checkpoint, split, pathlib.Path(work_dir) / f"eval_{split}")
        for split in chosen
    }
    spacing_note = json.loads(info.path.read_text()).get("spacing")  # e.g. ACDC's h5 copy: none stored
    return {
        "bundle": pathlib.Path(bundle).name,
        "class_names": list(info.class_names),
        "class_share": share,
        "splits": chosen,
        "seeds": [0],
        "arms": {"model": {"seeds": {"0": {"summaries": summaries}}}},
        "source": f"{_shown(checkpoint)} on {_shown(info.path)}",
        "spacing_note": spacing_note if isinstance(spacing_note, str) else None,
    }


def _scored(names: Sequence[str]) -> List[int]:
    """The classes a card reports: all but one named "background" (street scenes have no background class)."""
    return [k for k, name in enumerate(names) if str(name).lower() != "background"]


def _shown(path) -> str:
    """``path`` relative to the working directory where it lies below it (no machine's absolute paths in a card)."""
    resolved = pathlib.Path(path).resolve()
    try:
        return str(resolved.relative_to(pathlib.Path.cwd()))
    except ValueError:
        return str(resolved)


def _per_class(results: dict, arm: str, split: str, metric: str) -> List[str]:
    """Per-class mean with a 95% interval: crossed seeds x cases for a study; for the one shipped model, over its
    test cases alone (the model is fixed; another training run would vary more)."""
    from medseg_dropclass.study.formatting import interval_text
    from medseg_dropclass.study.report import case_clusters, case_matrix, finished_seeds
    from medseg_dropclass.study.statistics import crossed_estimate, per_seed_mean

    seeds = finished_seeds(results, arm)
    values = case_matrix(results, arm, split, metric, seeds)
    result = crossed_estimate(
        {"s": values},
        lambda v: per_seed_mean(v["s"]),
        clusters={"s": case_clusters(results, arm, split, seeds)},
        seed_level=values.shape[0] > 1,
    )
    return [interval_text(result, k) for k in range(values.shape[2])]


def _cases_with(results: dict, arm: str, split: str) -> List[int]:
    from medseg_dropclass.study.report import case_matrix

    values = case_matrix(results, arm, split, "Dice")[0]
    return [int(np.sum(~np.isnan(values[:, k]))) for k in range(values.shape[1])]


def _performance_table(results: dict, arm: str, split: str) -> List[str]:
    names, share = results["class_names"], results["class_share"]
    dice, iou = _per_class(results, arm, split, "Dice"), _per_class(results, arm, split, "IoU")
    cases = _cases_with(results, arm, split)
    total = len(
        results["arms"][arm]["seeds"][next(iter(results["arms"][arm]["seeds"]))]["summaries"][split]["metric_per_case"]
    )
    lines = ["| class | training share | Dice [95% CI] | IoU [95% CI] | cases scored |", "|---|---:|---:|---:|---:|"]
    for k in _scored(names):
        lines.append(f"| {names[k]} | {100 * share[k]:.2f}% | {dice[k]} | {iou[k]} | {cases[k]} of {total} |")
    return lines


def _subset(results: dict, split: str, text: str) -> dict:
    """``results`` with the shipped model's cases of ``split`` whose reference file name contains ``text`` only."""
    import copy

    subset = copy.deepcopy(results)
    summary = subset["arms"]["model"]["seeds"]["0"]["summaries"][split]
    summary["metric_per_case"] = [c for c in summary["metric_per_case"] if text in pathlib.Path(c["reference"]).name]
    return subset


def _clinical_lines(results: dict, split: str) -> List[str]:
    """HD95 per class, Dice per case group (e.g. ACDC's ED and ES apart) and, for cardiac bundles, the ventricles'
    end-diastolic volume and ejection fraction against the reference (Bland-Altman), for the shipped model."""
    from medseg_dropclass.evaluation.clinical import cardiac_indices

    names = results["class_names"]
    summary = results["arms"]["model"]["seeds"]["0"]["summaries"][split]
    cases, lines = summary["metric_per_case"], []
    unit = "mm" if not results.get("spacing_note") else "voxels (see the spacing note)"
    if cases and "HD95" in cases[0]["metrics"][names[-1]]:
        hd95 = _per_class(results, "model", split, "HD95")
        lines += [f"95th-percentile Hausdorff distance (MONAI's, in {unit}; cases where both maps hold the class):", ""]
        lines += ["| class | HD95 [95% CI] |", "|---|---:|"] + [f"| {names[k]} | {hd95[k]} |" for k in _scored(names)]
        lines.append("")
    groups = summary.get("groups", {})
    if groups:
        columns = {
            g: _per_class(_subset(results, split, part["match"]), "model", split, "Dice") for g, part in groups.items()
        }
        lines += [
            "Dice per phase:",
            "",
            "| class | " + " | ".join(f"{g} ({groups[g]['cases']} cases)" for g in groups) + " |",
        ]
        lines += ["|---|" + "---:|" * len(groups)]
        lines += [f"| {names[k]} | " + " | ".join(columns[g][k] for g in groups) + " |" for k in _scored(names)]
        lines.append("")
    if {"left_ventricle", "right_ventricle"} <= set(names):
        indices = cardiac_indices(cases)
        volume_unit = "mL" if not results.get("spacing_note") else "mL of nominal 1 mm voxels"
        lines += [
            "Clinical indices against the reference (Bland-Altman: bias of predicted minus reference, 95% limits of "
            "agreement), per patient with both phases:",
            "",
            f"| structure | patients | EDV bias [limits] ({volume_unit}) | EF bias [limits] (points of %) |",
            "|---|---:|---:|---:|",
        ]
        for structure in ("left_ventricle", "right_ventricle"):
            edv, ef = indices[structure]["edv_agreement"], indices[structure]["ef_agreement"]
            lines.append(
                f"| {structure} | {edv['n']} | {edv['bias']:+.2f} [{edv['lower']:+.2f}, {edv['upper']:+.2f}] | "
                f"{ef['bias']:+.1f} [{ef['lower']:+.1f}, {ef['upper']:+.1f}] |"
            )
        lines.append("")
    if lines and results.get("spacing_note"):
        lines += [f"Spacing note (dataset.json): {results['spacing_note']}. Volumes and distances are then in the "
                  "voxels of that grid, not comparable with the challenge's millimetres; the ejection fraction, a "
                  "ratio, is not affected.", ""]  # fmt: skip
    return lines


def _means(results: dict, arm: str, split: str) -> np.ndarray:
    from medseg_dropclass.study.report import case_matrix
    from medseg_dropclass.study.statistics import seed_mean

    return seed_mean(case_matrix(results, arm, split, "Dice"))


def _input_checks(metadata: dict) -> str:
    """What happens to an input unlike the training data, as the code does it (data.dicom, data.domain)."""
    image = metadata.get("network_data_format", {}).get("inputs", {}).get("image", {})
    modality = str(image.get("modality", ""))
    if modality.lower() == "synthetic":
        return (
            "this is a demonstration model trained on synthetic phantoms: any input of the right channel count is "
            "segmented, and every output (log, review page, DICOM SEG) says `DEMONSTRATION: trained on synthetic "
            "phantoms only`"
        )
    domain = "" if metadata.get("training_domain") else " (this bundle records no training domain: no such notices)"
    refused = f"a DICOM series of a modality other than {modality} or " if modality.upper() in ("CT", "MR") else ""
    return (
        f"inputs of {refused}another channel count are refused; a spacing, slice plane or CT intensity range outside "
        f"the training domain gives an out-of-domain notice in the log, the review page and the SEG{domain}"
    )


def _failure_modes(results: dict, arm: str, metadata: Optional[dict] = None) -> List[str]:
    from medseg_dropclass.data.stats import RARE
    from medseg_dropclass.study.report import shifted_split

    names, share = results["class_names"], results["class_share"]
    test = results["splits"][0]
    means = _means(results, arm, test)
    lines = []
    rare = [k for k in _scored(names) if share[k] < RARE]
    if rare:
        text = ", ".join(
            f"{names[k]} ({100 * share[k]:.2f}% of the training pixels, Dice {means[k]:.2f})" for k in rare
        )
        lines.append(
            f"- **Rare classes**: {text}. Small structures are where errors concentrate; a missed or "
            "hallucinated small structure changes the case's Dice a lot."
        )
    worst = min(_scored(names), key=lambda k: means[k] if not math.isnan(means[k]) else 2.0)
    lines.append(f"- **Weakest class** on `{test}`: {names[worst]} (mean Dice {means[worst]:.2f}).")
    shifted = shifted_split(results)
    if shifted is not None:
        moved = _means(results, arm, shifted)
        drops = sorted(
            (
                (means[k] - moved[k], k)
                for k in _scored(names)
                if not math.isnan(moved[k]) and means[k] - moved[k] >= 0.005
            ),
            reverse=True,
        )
        text = (
            ", ".join(f"{names[k]} {means[k]:.2f} -> {moved[k]:.2f}" for _, k in drops[:3])
            or "none (no class lost 0.005 Dice or more)"
        )
        lines.append(
            f"- **Distribution shift** (`{test}` -> `{shifted}`): the largest Dice drops are {text}. Inputs unlike "
            "the training data (another context, pathology or appearance) lose accuracy without any warning."
        )
    lines.append(
        f"- **Not covered by the evaluation**: only the splits {', '.join(f'`{s}`' for s in results['splits'])} of "
        "the training dataset were scored; other scanners, sites, protocols, populations and image qualities were "
        f"not; calibration and uncertainty were not evaluated; {_input_checks(metadata or {})}."
    )
    return lines


def model_card(
    metadata: dict,
    model: Optional[dict] = None,
    study: Optional[dict] = None,
    study_arms: Sequence[str] = (),
    command: str = "",
) -> str:
    """The model card text from a bundle's ``metadata`` and measured results (``evaluate_model`` / ``compare``'s results.json)."""
    network = metadata.get("network_data_format", {})
    image = network.get("inputs", {}).get("image", {})
    pred = network.get("outputs", {}).get("pred", {})
    lines = [
        f"# Model card: {metadata.get('name', 'model')} (bundle version {metadata.get('version', '?')})",
        "",
        f"Generated by `{command or 'python -m medseg_dropclass model-card'}` on {datetime.date.today().isoformat()}; every number "
        "below comes from the results named here, not from hand. Regenerate it rather than editing it.",
        "",
        "## Intended use",
        "Research on class-imbalanced segmentation (training DropClass and its baseline side by side, studying rare "
        "classes and distribution shift). **Not a medical device. Not for clinical decisions**: no diagnosis, treatment, "
        "triage or report may rest on its output."
        + (
            " A clinician who views its DICOM SEG output views a research result."
            if str(image.get("modality", "")).upper() in ("CT", "MR")
            else ""
        ),
        "",
        "## Model",
        f"- Task: {metadata.get('task', '')}",
        f"- {metadata.get('description', '')}",
        f"- Input: {image.get('num_channels', '?')} channel(s) of modality `{image.get('modality', '?')}`, "
        f"{len(image.get('spatial_shape', []))}D ({metadata.get('image_classes', '')}).",
        f"- Output: {pred.get('num_channels', '?')} classes: "
        + ", ".join(f"{k} {v}" for k, v in sorted(pred.get("channel_def", {}).items(), key=lambda kv: int(kv[0])))
        + ".",
        f"- Training data: {metadata.get('data_source', '')}",
        "",
    ]
    results = model or study
    if results is not None:
        names, share = results["class_names"], results["class_share"]
        lines += ["## Training data: class shares", "", "| class | share of the training pixels |", "|---|---:|"]
        lines += [f"| {names[k]} | {100 * share[k]:.3f}% |" for k in range(len(names))]
        lines.append("")
    if model is not None:
        lines += [
            f"## Measured performance of the shipped model (`{MODEL}`)",
            "",
            f"Evaluated by the bundle's own `evaluate` config ({model.get('source', '')}); per case, nnU-Net semantics "
            "(a class absent from a case's reference and prediction has no value there); 95% percentile bootstrap "
            "intervals over cases (one model: they say how precisely the test set measures it, not how another "
            "training run would do).",
            "",
        ]
        for split in model["splits"]:
            lines += [f"### `{split}`", ""] + _performance_table(model, "model", split) + [""]
            lines += _clinical_lines(model, split)
    elif study is None:
        lines += [
            "## Measured performance",
            "",
            "**None yet.** No model is shipped with this bundle and no study of it has been run here; train it and "
            "regenerate this card with `--evaluate --ckpt <model.pt>` (or `--study results.json`).",
            "",
        ]
    if study is not None:
        arms = [a for a in study_arms or study["arms"] if study["arms"].get(a, {}).get("seeds")]
        lines += [
            "## Across training runs (the study)",
            "",
            f"From `compare`'s results ({study.get('_path', 'results.json')}): the networks of the last epoch of every "
            "seed; 95% intervals over seeds and test cases, crossed (docs/STUDY_DESIGN.md).",
            "",
        ]
        for split in study["splits"]:
            lines += [
                f"### `{split}`",
                "",
                "| class | " + " | ".join(f"`{a}` Dice ({len(study['arms'][a]['seeds'])} seeds)" for a in arms) + " |",
                "|---|" + "---:|" * len(arms),
            ]
            columns = {a: _per_class(study, a, split, "Dice") for a in arms}
            for k in _scored(study["class_names"]):
                lines.append(f"| {study['class_names'][k]} | " + " | ".join(columns[a][k] for a in arms) + " |")
            lines.append("")
    if results is not None:
        arm = "model" if model is not None else (list(study_arms) or list(study["arms"]))[0]
        lines += [
            "## Known failure modes",
            "",
            f"(Figures: {'the shipped model' if model is not None else f'the `{arm}` arm'}.)",
            "",
        ]
        lines += _failure_modes(results, arm, metadata) + [""]
    else:
        lines += [
            "## Known failure modes",
            "",
            "- Not measured for this bundle yet. Expect what every model of this project shows: the rarest classes "
            "are the least accurate, and accuracy drops on inputs unlike the training data.",
            "",
        ]
    return "\n".join(lines)


def write_model_card(bundle: str, text: str) -> pathlib.Path:
    from medseg_dropclass.engine.bundles import find_bundle

    path = find_bundle(bundle) / "docs" / "model_card.md"
    path.write_text(text)
    return path


def model_card_main(argv: Optional[List[str]] = None) -> None:
    import argparse
    import tempfile

    from medseg_dropclass.engine.bundles import find_bundle

    parser = argparse.ArgumentParser(prog="python -m medseg_dropclass model-card", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", required=True, help="a shipped bundle's name or a bundle folder")
    parser.add_argument(
        "--evaluate", action="store_true", help="evaluate the model (--ckpt, default the bundle's models/model.pt)"
    )
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--dataset-dir", default=None, help="the dataset to evaluate on (default: the bundle's)")
    parser.add_argument(
        "--splits", nargs="+", default=None, help="labelled splits to score (default: all but training)"
    )
    parser.add_argument(
        "--study",
        default=None,
        help="a study of this bundle: its file (studies/NAME.yaml, read from its committed results) or a results.json of `compare`",
    )
    parser.add_argument("--study-arms", nargs="+", default=(), help="the study's arms to show (default: all)")
    parser.add_argument(
        "--output",
        default=None,
        help="the card's file (default: <bundle>_model_card.md in the current folder; pass <bundle>/docs/model_card.md to update a bundle)",
    )
    args = parser.parse_args(argv)
    root = find_bundle(args.bundle)
    metadata = json.loads((root / "configs" / "metadata.json").read_text())
    model = study = None
    if args.evaluate:
        checkpoint = pathlib.Path(args.ckpt) if args.ckpt else root / MODEL
        if not checkpoint.is_file():
            print(f"error: {checkpoint}: no such checkpoint (train the bundle, or pass --ckpt)", file=sys.stderr)
            sys.exit(1)
        with tempfile.TemporaryDirectory(prefix="model_card_") as work:
            model = evaluate_model(str(root), str(checkpoint), args.dataset_dir, args.splits, work)
    if args.study:
        path = pathlib.Path(args.study)
        if not path.is_file():
            print(f"error: {path}: no such results file", file=sys.stderr)
            sys.exit(1)
        if path.suffix in (".yaml", ".yml"):  # a study file: the results committed beside its report
            from medseg_dropclass.study.study_file import load_study, study_results

            try:
                definition = load_study(str(path))
                study = study_results(definition, definition.results / "results")
            except (ValueError, FileNotFoundError) as error:
                print(f"error: {error}", file=sys.stderr)
                sys.exit(1)
        else:
            study = json.loads(path.read_text())
        study["_path"] = str(args.study)
        unknown = [a for a in args.study_arms if a not in study["arms"]]
        if unknown:
            print(f"error: {path}: no arm(s) {unknown}; arms: {', '.join(study['arms'])}", file=sys.stderr)
            sys.exit(1)
    command = "python -m medseg_dropclass model-card " + " ".join(argv if argv is not None else sys.argv[1:])
    text = model_card(metadata, model, study, args.study_arms, command)
    output = pathlib.Path(args.output) if args.output else pathlib.Path(f"{root.name}_model_card.md")
    output.write_text(text)
    print(f"model card: {output}")
