"""A study is a file, written before its runs: ``studies/<name>.yaml``.

It names the bundle, the dataset folder and split scheme (config overrides), the arms (names from the registry,
``study/arms.yaml``, or arms of its own), the seeds and budget, the primary endpoint (its classes; each arm
against its compared arm), how cases cluster (``cluster_pattern``), the pooled-IoU report's options, and the folder
where its report and per-run results are committed. ``compare --study FILE`` runs or resumes it; ``study-report
FILE`` rewrites its committed report from the committed per-run results (no dataset, nothing trained), and a test
checks that every committed report is what that command writes.

Every value is data: overrides reach the bundle as literals (``engine.config_values``).
"""

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
from typing import Any, Dict, List, Optional, Sequence, Tuple

from medseg_dropclass.study.compare import ARMS, Arm, arm_from
from medseg_dropclass.study.report import SHIFT

__all__ = [
    "Study",
    "load_study",
    "study_results",
    "write_study_reports",
    "write_reports",
    "collect_runs",
    "reuse_committed_runs",
    "missing_runs",
    "hold_out_unfinished_arms",
    "study_report_main",
]

KEYS = {
    "name": "a short name",
    "question": "what the study asks, in one sentence",
    "registered": "the date the file was written",
    "bundle": "a shipped bundle's name or a bundle folder",
    "dataset_dir": "the dataset folder (relative to the working directory); null: the embedded phantoms, generated into the output folder",
    "overrides": "bundle config overrides for every arm",
    "max_epochs": "the 1x budget",
    "seeds": "the seeds",
    "arms": "arm names or {name: arm}",
    "eval_splits": "labelled splits, in-distribution first",
    "shift": "what the shifted split changes, in a few words for the report (default: the context shift)",
    "endpoint_classes": "the primary endpoint's classes",
    "cluster_pattern": "regular expression naming a case's subject in its reference file name",
    "results": "the committed report folder, relative to the study file",
    "pooled_iou": "also the pooled-IoU report",
    "similarity_pairs": "class pairs A:B for the pooled report",
    "contrasts": "secondary arm differences A:B",
    "gradcam_classes": "Grad-CAM classes",
    "notes": "free text",
    "shares_runs_with": "other study files (names in this folder) whose committed runs of an arm both run with the same settings are reused, not retrained",
}
# what must be equal for two studies to share a run (besides the arm's own definition)
SHARED_SETTINGS = ("bundle", "dataset_dir", "max_epochs", "overrides", "eval_splits")
REQUIRED = ("name", "bundle", "max_epochs", "seeds", "arms", "endpoint_classes", "results")


@dataclasses.dataclass
class Study:
    """A parsed study file (see the module docstring)."""

    path: pathlib.Path
    name: str
    bundle: str
    dataset_dir: Optional[str]
    max_epochs: int
    seeds: List[int]
    arms: Dict[str, Arm]
    endpoint_classes: List[str]
    results: pathlib.Path
    overrides: Dict[str, Any] = dataclasses.field(default_factory=dict)
    eval_splits: Optional[List[str]] = None
    shift: str = SHIFT
    cluster_pattern: Optional[str] = None
    pooled_iou: bool = False
    similarity_pairs: List[Tuple[str, str]] = dataclasses.field(default_factory=list)
    contrasts: List[Tuple[str, str]] = dataclasses.field(default_factory=list)
    gradcam_classes: List[str] = dataclasses.field(default_factory=list)
    question: str = ""
    registered: str = ""
    shares_runs_with: List["Study"] = dataclasses.field(default_factory=list)

    @property
    def blob(self) -> str:
        """The file's git blob id (``git log --find-object=<id>`` finds the commit that wrote this version)."""
        content = self.path.read_bytes()
        return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()

    def header(self) -> Dict[str, Any]:
        """What a report states about its study file."""
        return {
            "path": str(self.path),
            "name": self.name,
            "blob": self.blob,
            "registered": self.registered,
            "question": self.question,
        }


def _pairs(value: Any, where: str) -> List[Tuple[str, str]]:
    pairs = []
    for item in value or []:
        first, sep, second = str(item).partition(":")
        if not sep or not first or not second:
            raise ValueError(f"{where}: {item!r} is not A:B")
        pairs.append((first, second))
    return pairs


def load_study(path: str) -> Study:
    """Read and check a study file (and the study files it shares runs with).

    Raises:
        ValueError: not YAML, a missing or unknown key, an unknown arm, a bad value, a study it shares runs with that
            is missing or differs in a setting or in a shared arm's definition; the message names the file.
    """
    return _load_study(pathlib.Path(path), ())


def _load_study(file: pathlib.Path, sharing: Tuple[pathlib.Path, ...]) -> Study:
    """``load_study``; ``sharing``: the files that led here through ``shares_runs_with`` (a circle is refused)."""
    import yaml

    try:
        content = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{file}: cannot be read as a study file ({error})") from error
    if not isinstance(content, dict):
        raise ValueError(f"{file}: a mapping of study keys expected")
    missing = [k for k in REQUIRED if k not in content]
    unknown = sorted(set(content) - set(KEYS))
    if missing or unknown:
        raise ValueError(
            f"{file}: "
            + "; ".join(
                filter(
                    None,
                    [
                        f"missing key(s) {missing}" if missing else "",
                        f"unknown key(s) {unknown} (known: {', '.join(KEYS)})" if unknown else "",
                    ],
                )
            )
        )
    arms: Dict[str, Arm] = {}
    entries = content["arms"]
    for entry in entries if isinstance(entries, list) else [{k: v} for k, v in (entries or {}).items()]:
        if isinstance(entry, str):
            if entry not in ARMS:
                raise ValueError(
                    f"{file}: unknown arm {entry!r}; the registry has {', '.join(ARMS)} (or define it in the file)"
                )
            arms[entry] = ARMS[entry]
        elif isinstance(entry, dict) and len(entry) == 1:
            name, spec = next(iter(entry.items()))
            arms[str(name)] = arm_from(spec, f"{file}: arm {name!r}")
        else:
            raise ValueError(f"{file}: arms: a name or {{name: {{description, overrides}}}}, got {entry!r}")
    for name, arm in arms.items():
        if arm.reference not in arms and name != arm.reference and arm.reference != "baseline":
            raise ValueError(f"{file}: arm {name!r} is compared with {arm.reference!r}, which the study does not run")
    seeds = [int(s) for s in content["seeds"]]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"{file}: seeds must be distinct integers >= 0, got {content['seeds']}")
    if int(content["max_epochs"]) < 1:
        raise ValueError(f"{file}: max_epochs must be >= 1")
    if not isinstance(content.get("overrides", {}), dict):
        raise ValueError(f"{file}: overrides must be a mapping")
    contrasts = _pairs(content.get("contrasts"), f"{file}: contrasts")
    outside = sorted({a for pair in contrasts for a in pair} - set(arms))
    if outside:
        raise ValueError(f"{file}: contrasts name arm(s) {outside} the study does not run (arms: {list(arms)})")
    results = pathlib.Path(
        os.path.normpath(file.parent / str(content["results"]))
    )  # relative to the study file's folder
    study = Study(
        path=file,
        name=str(content["name"]),
        bundle=str(content["bundle"]),
        dataset_dir=None if content.get("dataset_dir") is None else str(content["dataset_dir"]),
        max_epochs=int(content["max_epochs"]),
        seeds=seeds,
        arms=arms,
        endpoint_classes=[str(c) for c in content["endpoint_classes"]],
        results=results,
        overrides=dict(content.get("overrides") or {}),
        eval_splits=content.get("eval_splits"),
        shift=str(content.get("shift") or SHIFT),
        cluster_pattern=content.get("cluster_pattern"),
        pooled_iou=bool(content.get("pooled_iou", False)),
        similarity_pairs=_pairs(content.get("similarity_pairs"), f"{file}: similarity_pairs"),
        contrasts=contrasts,
        gradcam_classes=[str(c) for c in content.get("gradcam_classes") or []],
        question=str(content.get("question", "")),
        registered=str(content.get("registered", "")),
    )
    for name in content.get("shares_runs_with") or []:
        other_path = file.parent / f"{name}.yaml"
        if not other_path.is_file():
            raise ValueError(f"{file}: shares_runs_with: no study file {other_path}")
        if other_path.resolve() in sharing + (file.resolve(),):
            raise ValueError(f"{file}: shares_runs_with: {other_path} shares back (a circle)")
        other = _load_study(other_path, sharing + (file.resolve(),))
        _check_sharable(study, other)
        study.shares_runs_with.append(other)
    return study


def _check_sharable(study: Study, other: Study) -> None:
    """Raise ``ValueError`` unless ``other``'s runs of the arms both studies run are runs ``study`` would train."""
    different = [key for key in SHARED_SETTINGS if getattr(study, key) != getattr(other, key)]
    common = [arm for arm in study.arms if arm in other.arms]
    redefined = [arm for arm in common if study.arms[arm] != other.arms[arm]]
    if different or redefined or not common:
        raise ValueError(
            f"{study.path}: cannot share runs with {other.path}: "
            + "; ".join(
                filter(
                    None,
                    [
                        "no arm in common" if not common else "",
                        ", ".join(f"{key} {getattr(study, key)!r} there {getattr(other, key)!r}" for key in different),
                        f"arm(s) {redefined} defined differently" if redefined else "",
                    ],
                )
            )
        )


def _run_folder(root: pathlib.Path, arm: str, seed: int) -> pathlib.Path:
    return root / arm / f"seed{seed}"


def missing_runs(study: Study, root: pathlib.Path) -> List[str]:
    """``"arm seed N"`` for every run of the study without a ``result.json`` under ``root``."""
    return [
        f"{arm} seed {seed}"
        for arm in study.arms
        for seed in study.seeds
        if not (_run_folder(root, arm, seed) / "result.json").is_file()
    ]


def study_results(study: Study, root: pathlib.Path) -> dict:
    """The results of a study (as ``run_study`` collects them) from the per-run ``result.json`` files under ``root``
    (``<arm>/seed<N>/``): nothing trained, no dataset needed. Class names and shares come from the evaluations
    themselves (the bundle's share of the training labels)."""
    results: Dict[str, Any] = {
        "bundle": pathlib.Path(study.bundle).name,
        "dataset_dir": study.dataset_dir,
        "max_epochs": study.max_epochs,
        "seeds": list(study.seeds),
        "overrides": dict(study.overrides),
        "endpoint_classes": list(study.endpoint_classes),
        "cluster_pattern": study.cluster_pattern,
        "shift": study.shift,
        "study": study.header(),
        "arms": {},
    }
    first = None
    for arm, spec in study.arms.items():
        entry = spec.results_entry()
        for seed in study.seeds:
            file = _run_folder(root, arm, seed) / "result.json"
            if file.is_file():
                run = json.loads(file.read_text())
                entry["seeds"][str(seed)] = run
                first = first or run
        results["arms"][arm] = entry
    if first is None:
        raise FileNotFoundError(
            f"{root}: no finished run of {study.path} ({', '.join(study.arms)}; seeds {study.seeds})"
        )
    hold_out_unfinished_arms(results)
    splits = list(study.eval_splits or first["summaries"])
    share = first["summaries"][splits[0]].get("class_share")
    if not share:
        raise ValueError(f"{root}: the runs' summaries hold no class_share (evaluated before the bundle recorded it)")
    results.update(class_names=list(share), class_share=[float(v) for v in share.values()], splits=splits)
    unknown = sorted(set(study.endpoint_classes) - set(share))
    if unknown:
        raise ValueError(f"{study.path}: endpoint class(es) {unknown} not in {list(share)}")
    return results


def hold_out_unfinished_arms(results: dict) -> Dict[str, List[int]]:
    """Take out of ``results["arms"]`` every arm that has some but not all of the study's seeds, and every arm compared
    with such an arm, as long as at least one arm has them all; returns ``{arm: its finished seeds}``, also recorded as
    ``results["held_out"]`` for the report.

    A report's numbers are on the seeds every reported arm finished, so one arm in progress would cut every table to
    its few seeds; held out, it enters the tables when it has finished (its runs can be committed as they come)."""
    from medseg_dropclass.study.report import finished_seeds

    asked = results["seeds"]
    finished = {arm: finished_seeds(results, arm) for arm in results["arms"]}
    results["held_out"] = {}
    if not any(len(seeds) == len(asked) for seeds in finished.values()):
        return {}  # no arm is complete: the report pairs the seeds every arm has finished
    held = {arm for arm, seeds in finished.items() if 0 < len(seeds) < len(asked)}
    while True:
        dependent = {
            arm
            for arm, entry in results["arms"].items()
            if arm not in held and entry.get("reference") in held and finished[arm]
        }
        if not dependent:
            break
        held |= dependent
    for arm in held:
        del results["arms"][arm]
    results["held_out"] = {arm: finished[arm] for arm in sorted(held)}
    return results["held_out"]


def write_reports(
    results: dict,
    output_dir: pathlib.Path,
    contrasts: Sequence[Tuple[str, str]] = (),
    similarity_pairs: Optional[Sequence[Tuple[str, str]]] = None,
    n_resamples: int = 2000,
    title: Optional[str] = None,
) -> List[pathlib.Path]:
    """``report.md`` (headed ``title``, default: baseline vs DropClass) and, given ``similarity_pairs`` (the pooled-IoU
    report's), ``report_pooled_iou.md`` in ``output_dir``; the contrasts go to the primary report: the pooled-IoU one
    where there is one."""
    from medseg_dropclass.study.pooled import write_pooled_report
    from medseg_dropclass.study.report import write_report

    pooled = similarity_pairs is not None
    written = [
        write_report(results, str(output_dir), title, n_resamples=n_resamples, contrasts=() if pooled else contrasts)
    ]
    if pooled:
        written.append(write_pooled_report(results, str(output_dir), similarity_pairs, n_resamples, contrasts))
    return written


def write_study_reports(
    study: Study, results: dict, output_dir: pathlib.Path, n_resamples: int = 2000
) -> List[pathlib.Path]:
    """``report.md`` (and, with ``pooled_iou``, ``report_pooled_iou.md``) in ``output_dir``, headed by the study."""
    return write_reports(
        results,
        output_dir,
        study.contrasts,
        study.similarity_pairs if study.pooled_iou else None,
        n_resamples,
        title=f"Study `{study.name}`: its arms side by side, per class",  # more arms than a baseline and DropClass
    )


RUN_FILES = ("result.json", "args.json")  # what a finished run leaves that a study commits


def _copy_runs(
    study: Study, source: pathlib.Path, target: pathlib.Path, keep_existing: bool, arms: Optional[List[str]] = None
) -> List[str]:
    """Copy each finished run (``<arm>/seed<N>/`` with a ``result.json``) of ``source`` into ``target``. A run already
    in ``target``: left alone with ``keep_existing``, else its files must be equal (a different one raises
    ``FileExistsError``; nothing is overwritten). Returns ``"arm seed N"`` of the copied runs."""
    copied = []
    for arm in study.arms if arms is None else arms:
        for seed in study.seeds:
            origin, destination = _run_folder(source, arm, seed), _run_folder(target, arm, seed)
            if not (origin / "result.json").is_file() or (keep_existing and (destination / "result.json").exists()):
                continue
            destination.mkdir(parents=True, exist_ok=True)
            for name in RUN_FILES:
                if not (origin / name).is_file():
                    continue
                if (destination / name).is_file() and (destination / name).read_bytes() != (origin / name).read_bytes():
                    raise FileExistsError(
                        f"{destination / name} differs from {origin / name}; remove it to replace it (nothing overwritten)"
                    )
                shutil.copyfile(origin / name, destination / name)
            copied.append(f"{arm} seed {seed}")
    return copied


def collect_runs(study: Study, source: pathlib.Path, target: pathlib.Path) -> List[str]:
    """Copy each finished run's ``result.json`` and ``args.json`` from a study's output folder into ``target`` (the
    committed results); an existing different file is never overwritten. Returns ``"arm seed N"`` of the copied runs."""
    return _copy_runs(study, source, target, keep_existing=False)


def reuse_committed_runs(study: Study, output_dir: pathlib.Path) -> List[str]:
    """Copy the study's committed runs (``<results>/results/<arm>/seed<N>/``), then those of the studies it shares runs
    with (arms both run), into ``output_dir`` where it has no run of that arm and seed yet, so that ``compare
    --study`` reuses them instead of training them again (``run_study`` checks that their recorded settings are the
    study's). A run already in ``output_dir`` is left alone. Returns ``"arm seed N"`` (``"... (from <study>)"``)."""
    copied = _copy_runs(study, study.results / "results", output_dir, keep_existing=True)
    for other in study.shares_runs_with:
        arms = [arm for arm in study.arms if arm in other.arms]
        copied += [
            f"{run} (from {other.name})"
            for run in _copy_runs(study, other.results / "results", output_dir, keep_existing=True, arms=arms)
        ]
    return copied


def study_report_main(argv: Optional[Sequence[str]] = None) -> None:
    """``study-report STUDY.yaml [--collect OUTPUT_DIR] [--output-dir DIR]``: rewrite a study's committed report from its
    committed per-run results (``<results>/results/``), after copying in the finished runs of ``--collect``.
    ``study-report A.yaml B.yaml ...``: rewrite each (a study with no finished run is named and skipped).
    ``study-report A.yaml [B.yaml ...] --decision-table FILE``: write the decision table over those studies instead."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m medseg_dropclass study-report", description=study_report_main.__doc__
    )
    parser.add_argument("study", nargs="+", help="the study file(s), e.g. studies/acdc_common.yaml or studies/*.yaml")
    parser.add_argument(
        "--collect",
        default=None,
        metavar="OUTPUT_DIR",
        help="copy the finished runs of this compare output folder in first",
    )
    parser.add_argument(
        "--output-dir", default=None, help="where the report goes (default: the study's results folder)"
    )
    parser.add_argument(
        "--decision-table",
        default=None,
        metavar="FILE",
        help="write the decision table of the studies named (each method against its compared arm) to FILE",
    )
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args(argv)
    if args.decision_table:
        if args.collect or args.output_dir:
            parser.error("--decision-table writes only the table: collect and report each study first")
        _decision_table_main(args.study, pathlib.Path(args.decision_table), args.resamples)
        return
    if len(args.study) > 1 and (args.collect or args.output_dir):
        parser.error(f"--collect and --output-dir take one study (got {len(args.study)})")
    for path in args.study:
        _study_report(path, args.collect, args.output_dir, args.resamples, alone=len(args.study) == 1)


def _study_report(path: str, collect: Optional[str], output_dir: Optional[str], n_resamples: int, alone: bool) -> None:
    """One study's report (``study_report_main``); with several studies (``alone`` false) one that has no finished
    run is named and skipped, not an error."""
    import sys

    try:
        study = load_study(path)
        runs = study.results / "results"
        if collect:
            print(f"copied {len(collect_runs(study, pathlib.Path(collect), runs))} run(s) from {collect} into {runs}")
        missing = missing_runs(study, runs)
        if not alone and len(missing) == len(study.arms) * len(study.seeds):
            print(f"{path}: no finished run committed yet; no report written")
            return
        results = study_results(study, runs)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    if missing:
        print(
            f"{len(missing)} run(s) of {study.path} not finished yet (reported without them): {', '.join(missing)}",
            file=sys.stderr,
        )
    for written in write_study_reports(
        study, results, pathlib.Path(output_dir) if output_dir else study.results, n_resamples
    ):
        print(f"wrote {written}")


def _decision_table_main(paths: Sequence[str], output: pathlib.Path, n_resamples: int) -> None:
    """``study-report ... --decision-table FILE``: a study without a committed run is listed as not run yet."""
    import sys

    from medseg_dropclass.study.decision import write_decision_table

    sections = []
    try:
        for path in paths:
            study = load_study(path)
            runs = study.results / "results"
            finished = len(missing_runs(study, runs)) < len(study.arms) * len(study.seeds)
            results = study_results(study, runs) if finished else None
            sections.append((study.name, results, study.pooled_iou))
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    command = "python -m medseg_dropclass study-report " + " ".join(paths) + f" --decision-table {output}"
    print(f"wrote {write_decision_table(sections, output, command, n_resamples)}")
