"""Baseline vs DropClass (and its variants and controls), side by side, per class, over seeds:
``python -m medseg_dropclass compare``.

Every arm is a bundle (``phantom2d_dropclass`` by default; any bundle folder with ``--bundle``) with a
few config overrides on the bundle base's recipe, trained in its own process (so its wall time and peak
memory are its own), then evaluated by the bundle's own ``evaluate`` config (the one evaluator: per case,
nnU-Net semantics, through the bundle's inferer) on every labelled evaluation split of the dataset, with
the network of its last epoch (no checkpoint selection, so equal iterations mean equal iterations).
Studies resume (finished runs are reused, interrupted ones continue from their checkpoint); the report
(:mod:`medseg_dropclass.study.report`) follows docs/STUDY_DESIGN.md. The demo is this command with
two arms and one seed.
"""

import json
import math
import os
import pathlib
import subprocess
import sys
import time
import zlib
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

import torch

from medseg_dropclass.engine.bundles import bundle_parser, find_bundle, run_bundle
from medseg_dropclass.engine.checkpoints import latest_checkpoint, read_checkpoint
from medseg_dropclass.engine.config_values import ConfigKeyError
from medseg_dropclass.engine.run_lock import FolderLockedError, folder_lock
from medseg_dropclass.evaluation.similarity import class_weight_similarity, save_similarity_heatmap, similarity_summary

__all__ = [
    "ARMS",
    "Arm",
    "drop_seed",
    "run_study",
    "evaluate_run",
    "evaluation_splits",
    "write_figures",
]

BUNDLE = "phantom2d_dropclass"


class Arm(NamedTuple):
    """One arm of a study: what it is, its config overrides, its budget and the arm it is compared with."""

    description: str
    overrides: Dict[str, Any]
    budget: int = 1
    reference: str = "baseline"

    def results_entry(self) -> Dict[str, Any]:
        """The arm's entry of a study's results (its runs go under ``"seeds"``)."""
        dropping = self.overrides.get("dropclass", True)
        return {
            "description": self.description,
            "budget": self.budget,
            "reference": self.reference,
            "seeds": {},
            "drop_sequence": "own stream (seeded by arm and seed)" if dropping else "none (no DropClass)",
        }


def load_arms(path: Optional[pathlib.Path] = None) -> Dict[str, Arm]:
    """The arm registry (``arms.yaml`` beside this module, or ``path``): ``{name: Arm}``; data, never code.

    Raises:
        ValueError: an entry without ``description`` or ``overrides``, or with unknown keys (the file is named).
    """
    import yaml

    path = pathlib.Path(path) if path is not None else pathlib.Path(__file__).with_name("arms.yaml")
    return {
        name: arm_from(entry, f"{path}: arm {name!r}")
        for name, entry in (yaml.safe_load(path.read_text()) or {}).items()
    }


def arm_from(entry: Any, where: str) -> Arm:
    """One :class:`Arm` from its mapping (``description``, ``overrides``, optional ``budget`` and ``reference``)."""
    if not isinstance(entry, dict) or not {"description", "overrides"} <= set(entry) or set(entry) - set(Arm._fields):
        raise ValueError(f"{where}: expected description, overrides[, budget, reference], got {entry!r}")
    if not isinstance(entry["overrides"], dict) or int(entry.get("budget", 1)) < 1:
        raise ValueError(f"{where}: overrides must be a mapping and budget an integer >= 1")
    return Arm(
        str(entry["description"]),
        dict(entry["overrides"]),
        int(entry.get("budget", 1)),
        str(entry.get("reference", "baseline")),
    )


ARMS: Dict[str, Arm] = load_arms()


def drop_seed(arm: str, seed: int) -> int:
    """Each arm's own drop-sequence stream for a seed (network initialisation and data order stay paired by seed)."""
    return zlib.crc32(f"{arm}:{seed}".encode()) % (2**31)


def evaluation_splits(dataset_json: pathlib.Path) -> List[str]:
    """The labelled splits of a ``dataset.json`` besides ``training``; ``["validation"]`` (held out of
    training by the bundle) when there is none (an MSD task's ``test`` has no labels)."""
    content = json.loads(pathlib.Path(dataset_json).read_text())
    splits = [
        name
        for name, entries in content.items()
        if name != "training"
        and isinstance(entries, list)
        and entries
        and all(isinstance(e, dict) and "label" in e for e in entries)
    ]
    return splits or ["validation"]


def train_arm(
    bundle: str, overrides: dict, output_dir: pathlib.Path, threads: Optional[int] = None, side_by_side: int = 1
) -> Dict[str, float]:
    """Train one arm in a child process (with ``threads`` torch threads where given); return its wall time (s),
    peak resident memory (MiB), thread count and ``side_by_side`` (how many runs trained at once: a run's wall time
    compares only with runs trained alike).

    The peak is the child's own ``VmHWM`` (Linux ``/proc``, reset at exec), read while it runs: the
    ``ru_maxrss`` of ``wait4`` would include the parent's memory at fork time, which grows over a study.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    args_file = output_dir / "args.json"
    args_file.write_text(json.dumps({**overrides, "output_dir": str(output_dir / "run")}))
    command = [sys.executable, "-m", "medseg_dropclass", "run", str(bundle), "train", "--args_file", str(args_file)]
    log = (output_dir / "train.log").open("a")  # a resumed run's log follows the interrupted one's
    log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command[1:])} (threads: {threads or 'default'})\n")
    log.flush()
    start = time.perf_counter()
    env = dict(os.environ, TQDM_DISABLE="1")  # no progress bars in a log file: ignite's epoch lines say it
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    peak_kib, loads = 0, []
    while process.poll() is None:
        peak_kib = max(peak_kib, _high_water_mark_kib(process.pid))
        loads.append(_load_average())
        time.sleep(0.25)
    seconds = time.perf_counter() - start
    log.close()
    if process.returncode != 0:
        tail = (output_dir / "train.log").read_text()[-2000:]
        raise RuntimeError(f"training {output_dir} failed (exit {process.returncode}):\n{tail}")
    return {
        "seconds": seconds,
        "peak_memory_mib": peak_kib / 1024.0 if peak_kib else float("nan"),
        # the numerics depend on it: a run regenerates bitwise only at the same thread count
        "threads": threads or torch.get_num_threads(),
        "side_by_side": side_by_side,
        **_machine_load(loads),
    }


def _load_average() -> float:
    """The machine's 1-minute load average (NaN where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def _machine_load(samples: List[float]) -> Dict[str, float]:
    """``{"machine_load": mean}`` of the 1-minute load averages sampled while a run trained (the runnable processes:
    about ``side_by_side`` x threads where nothing else ran; more shows other work beside it, which its wall time
    carries), or nothing where none was sampled."""
    values = [v for v in samples if not math.isnan(v)]
    return {"machine_load": round(sum(values) / len(values), 2)} if values else {}


def _high_water_mark_kib(pid: int) -> int:
    """``VmHWM`` of a running process in KiB (0 where ``/proc`` is not available or the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def evaluate_run(bundle: str, overrides: dict, checkpoint: str, split: str, eval_dir: pathlib.Path) -> dict:
    """The bundle's ``evaluate`` config on one split with ``checkpoint``; returns its ``summary.json``."""
    run_bundle(bundle, "evaluate", **overrides, ckpt_path=str(checkpoint), eval_split=split, eval_dir=str(eval_dir))
    return json.loads((eval_dir / "summary.json").read_text())


def final_checkpoint(run_dir: pathlib.Path) -> str:
    checkpoint = latest_checkpoint(str(run_dir / "checkpoints"))
    if checkpoint is None:
        raise FileNotFoundError(f"no checkpoint_epoch=*.pt under {run_dir / 'checkpoints'}")
    return checkpoint


def bundle_class_share(bundle: str, overrides: dict) -> tuple:
    """``(class_names, class_share)`` as the bundle computes them (its training datalist, labels through its
    preprocessing, the ignore index left out): for datasets without a ``dataset.json``."""
    parser = bundle_parser(bundle, overrides)
    return list(parser.get_parsed_content("class_names")), [float(v) for v in parser.get_parsed_content("class_share")]


def load_final_network(parser, run_dir: pathlib.Path) -> torch.nn.Module:
    """The network of ``parser`` with the weights of the last epoch checkpoint under ``run_dir``, in eval mode."""
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(read_checkpoint(final_checkpoint(run_dir))["network"])
    return network.eval()


def run_study(
    output_dir: str,
    arms: Sequence[str],
    seeds: Sequence[int],
    max_epochs: int,
    dataset_dir: Optional[str] = None,
    bundle: str = BUNDLE,
    extra_overrides: Optional[dict] = None,
    train: bool = True,
    eval_splits: Optional[Sequence[str]] = None,
    endpoint_classes: Optional[Sequence[str]] = None,
    named_classes: Optional[Dict[str, Sequence[str]]] = None,
    registry: Optional[Dict[str, Arm]] = None,
    jobs: int = 1,
) -> dict:
    """Train and evaluate every arm for every seed; return (and write to ``results.json``) the results.

    ``jobs``: runs trained side by side (each with ``cores // jobs`` threads), each evaluated here as its training
    ends (while the others still train; a failed run stops none of them); 1 (the default): one run at a time with every core.

    ``train=False`` collects the finished runs only (a report of a study in progress; nothing is trained).
    ``eval_splits``: the labelled splits scored, in-distribution first (default: every labelled split besides
    ``training``); ``endpoint_classes``: the primary endpoint's classes by name (default: those under 1%);
    ``named_classes``: further class names by the option that named them (e.g. ``--gradcam-classes``), checked
    with the endpoint's before anything trains.

    Resumable: a finished (arm, seed) with the same configuration is reused from its ``result.json``;
    an interrupted one continues from its last epoch checkpoint (the bundle's resume handler); the
    collected ``results.json`` is rewritten after every run, so a study can span several sittings.

    Raises:
        ValueError: an unknown arm, or a finished run whose recorded configuration differs (the
            output folder belongs to another study: nothing is overwritten).
    """
    registry = ARMS if registry is None else registry
    unknown = [a for a in arms if a not in registry]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; known: {', '.join(registry)}")
    with folder_lock(str(pathlib.Path(output_dir).resolve()), "study folder"):  # one writer per study folder
        from medseg_dropclass.data import DEFAULT_2D, make_phantom_dataset, read_dataset_json

        bundle = str(find_bundle(bundle))
        out = pathlib.Path(output_dir).resolve()
        data = pathlib.Path(dataset_dir).resolve() if dataset_dir else out / "data" / "phantom2d_v2"
        if dataset_dir is None and not (data / "dataset.json").is_file():
            make_phantom_dataset(str(data), DEFAULT_2D, progress=False)
        # e.g. CamVid's split lists: no split names to read
        if not (data / "dataset.json").is_file() and not eval_splits:
            raise ValueError(
                f"{data} has no dataset.json: name the labelled splits to score (--eval-splits, e.g. test)"
            )
        # the class share as the bundle computes it (its training split, labels through its preprocessing), once,
        # passed on to every evaluation: one definition for the sampling weights, the frequency bins and the reports
        class_names, share = bundle_class_share(bundle, {**(extra_overrides or {}), "dataset_dir": str(data)})
        splits = list(eval_splits) if eval_splits else evaluation_splits(read_dataset_json(data).path)
        unknown_classes = [name for name in endpoint_classes or [] if name not in class_names]
        if unknown_classes:
            raise ValueError(f"endpoint class(es) {unknown_classes} not in {class_names}")
        for option, names in (named_classes or {}).items():
            unknown_classes = sorted(set(names) - set(class_names))
            if unknown_classes:
                raise ValueError(f"{option}: class(es) {unknown_classes} not in {class_names}")
        val_interval = max(1, max_epochs // 10)
        results: dict = {
            "bundle": pathlib.Path(bundle).name,
            "dataset_dir": str(data),
            "class_names": class_names,
            "class_share": share,
            "splits": splits,
            "arms": {},
            "max_epochs": max_epochs,
            "seeds": list(seeds),
            "overrides": dict(extra_overrides or {}),
            "endpoint_classes": list(endpoint_classes or []),
        }
        runs = []  # (arm, seed, overrides, folder, finished entry or None), in report order
        for arm in arms:
            spec = registry[arm]
            results["arms"][arm] = spec.results_entry()
            for seed in seeds:
                full = {
                    "dataset_dir": str(data),
                    "seed": seed,
                    "drop_seed": drop_seed(arm, seed),
                    "max_epochs": max_epochs * spec.budget,
                    "val_interval": val_interval * spec.budget,
                    **(extra_overrides or {}),
                    **spec.overrides,
                }
                arm_dir = out / arm / f"seed{seed}"
                runs.append((arm, seed, full, arm_dir, _finished(arm_dir, full, splits)))
        pending = [run for run in runs if run[4] is None] if train else []
        entries: Dict[tuple, dict] = {}

        def record(arm: str, seed: int, entry: dict) -> None:
            entries[(arm, seed)] = entry
            # every arm's seeds in study order, whichever run finished first
            for name in results["arms"]:
                results["arms"][name]["seeds"] = {str(s): entries[(name, s)] for s in seeds if (name, s) in entries}
            (out / "results.json").write_text(json.dumps(results, indent=1))

        for arm, seed, _, _, entry in runs:
            if entry is not None:
                record(arm, seed, entry)
        if jobs > 1 and len(pending) > 1:
            _train_concurrently(
                bundle,
                pending,
                jobs,
                lambda run, trained: record(
                    run[0], run[1], _train_and_evaluate(bundle, *run[:4], splits, share, trained)
                ),
            )
        for arm, seed, full, arm_dir, entry in pending:
            if (arm, seed) not in entries:
                record(arm, seed, _train_and_evaluate(bundle, arm, seed, full, arm_dir, splits, share))
        return results


def _train_concurrently(bundle: str, pending: list, jobs: int, finish: Callable[[tuple, tuple], None]) -> None:
    """Train ``pending`` runs ``jobs`` at a time, each child with ``cores // jobs`` threads (small networks scale
    poorly over threads: two one-thread runs side by side take ~1.75x less wall time than one after the other on 2
    cores, measured on the phantoms), and call ``finish(run, (cost, resumed checkpoint or None))`` in this thread as
    each ends (its evaluation runs while the others still train, and its result is on disk if a later run fails or
    the sitting ends). A failed run does not stop the others nor their ``finish``; the first failure is raised after."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // jobs)
    failures = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # threads only wait on the child processes
        futures = {pool.submit(_train, bundle, run[0], run[1], run[2], run[3], threads, jobs): run for run in pending}
        for future in as_completed(futures):
            try:
                finish(futures[future], future.result())
            except Exception as error:  # noqa: BLE001 - the other runs go on; raised below
                failures.append(error)
    if failures:
        if len(failures) > 1:
            print(f"{len(failures)} runs failed; the first:", file=sys.stderr)
        raise failures[0]


def _finished(arm_dir: pathlib.Path, overrides: dict, splits: Sequence[str] = ()) -> Optional[dict]:
    """The stored result of a finished run with exactly these overrides (scored on ``splits``), else ``None``."""
    result = arm_dir / "result.json"
    if not result.is_file():
        return None
    entry = json.loads(result.read_text())
    if _portable(entry.get("overrides")) != _portable(json.loads(json.dumps(overrides))):
        raise ValueError(
            f"{result} was produced with other settings ({entry.get('overrides')}); this study asks for {overrides}. "
            "Use another --output-dir, or delete that run to redo it (nothing is overwritten)."
        )
    unscored = [split for split in splits if split not in entry.get("summaries", {})]
    if unscored:
        raise ValueError(
            f"{result} holds no evaluation on split(s) {unscored}; this study scores {list(splits)}. "
            "Delete that run to redo it (nothing is overwritten)."
        )
    print(f"[{arm_dir.parent.name} seed {overrides['seed']}] finished earlier: reused", flush=True)
    return entry


def _portable(overrides: Optional[dict]) -> Optional[dict]:
    """Overrides as compared between sittings: the dataset by its folder's name, so that a study's committed
    ``result.json`` files are reused on another machine or checkout where the same dataset lies elsewhere."""
    if not overrides or "dataset_dir" not in overrides:
        return overrides
    return {**overrides, "dataset_dir": pathlib.Path(str(overrides["dataset_dir"])).name}


def _train(
    bundle: str,
    arm: str,
    seed: int,
    full: dict,
    arm_dir: pathlib.Path,
    threads: Optional[int] = None,
    side_by_side: int = 1,
) -> tuple:
    resumed = latest_checkpoint(str(arm_dir / "run" / "checkpoints"))
    print(
        f"[{arm} seed {seed}] training {full['max_epochs']} epochs"
        + (f", resuming from {pathlib.Path(resumed).name}" if resumed else "")
        + (f" ({threads} thread(s), beside other runs)" if threads else ""),
        flush=True,
    )
    return train_arm(bundle, full, arm_dir, threads, side_by_side), resumed


def _train_and_evaluate(
    bundle: str,
    arm: str,
    seed: int,
    full: dict,
    arm_dir: pathlib.Path,
    splits: List[str],
    share: List[float],
    trained: Optional[tuple] = None,
) -> dict:
    cost, resumed = trained if trained is not None else _train(bundle, arm, seed, full, arm_dir)
    checkpoint = final_checkpoint(arm_dir / "run")
    evaluated = {**full, "output_dir": str(arm_dir / "run"), "class_share": share}
    entry: dict = {"overrides": full, "cost": cost, "resumed": resumed is not None, "summaries": {}}
    parser = bundle_parser(bundle, full)
    images = (
        full["max_epochs"]
        * len(parser.get_parsed_content("train_datalist"))
        * int(getattr(parser.get_parsed_content("preprocessing"), "num_crops", 1))
    )
    cost["images_per_second"] = images / cost["seconds"] if not resumed else float("nan")
    for split in splits:
        entry["summaries"][split] = evaluate_run(bundle, evaluated, checkpoint, split, arm_dir / f"eval_{split}")
    state = read_checkpoint(checkpoint)["network"]
    weight = next(v for k, v in state.items() if k.endswith("head.classifier.weight"))
    similarity = class_weight_similarity(weight)
    entry["similarity"] = {"matrix": similarity.tolist(), **similarity_summary(similarity, share)}
    (arm_dir / "result.json").write_text(json.dumps(entry, indent=1))
    first = splits[0]
    print(
        f"[{arm} seed {seed}] {cost['seconds']:.0f} s, peak {cost['peak_memory_mib']:.0f} MiB, "
        f"foreground Dice {entry['summaries'][first]['foreground_mean']['Dice']:.3f} ({first})",
        flush=True,
    )
    return entry


def _has_weights(run_dir: pathlib.Path) -> bool:
    """Whether a run folder keeps an epoch checkpoint (a run reused from committed results keeps only its
    ``result.json`` and ``args.json``)."""
    return latest_checkpoint(str(run_dir / "checkpoints")) is not None


def write_figures(results: dict, output_dir: str) -> List[pathlib.Path]:
    """Similarity heatmap (first seed) and Grad-CAM overlays (first case of the last evaluation split; the first seed
    whose run keeps its weights) per arm. An arm none of whose runs keeps weights gets no Grad-CAM, said on stdout."""
    from medseg_dropclass.evaluation.gradcam import save_gradcam_overlays

    out = pathlib.Path(output_dir)
    names = results["class_names"]
    bundle = results.get("bundle", BUNDLE)
    written = []
    for arm, entry in results["arms"].items():
        if not entry["seeds"]:  # a study in progress: nothing finished for this arm yet
            continue
        first = next(iter(entry["seeds"].values()))
        matrix = torch.tensor(first["similarity"]["matrix"])
        written.append(
            pathlib.Path(
                save_similarity_heatmap(
                    matrix, names, str(out / f"similarity_{arm}.png"), f"{arm}: class weight similarity"
                )
            )
        )
        seed = next((s for s in entry["seeds"] if _has_weights(out / arm / f"seed{s}" / "run")), None)
        if seed is None:
            print(
                f"Grad-CAM of {arm} not drawn: none of its runs under {out / arm} keeps a checkpoint (runs reused "
                "from committed results keep only result.json and args.json)"
            )
            continue
        arm_dir = out / arm / f"seed{seed}"
        overrides = json.loads((arm_dir / "args.json").read_text())
        parser = bundle_parser(bundle, overrides)
        network = load_final_network(parser, arm_dir / "run")
        split = results["splits"][-1]
        items = (
            parser.get_parsed_content("val_datalist")
            if split == "validation"
            else parser.get_parsed_content("datalist")(split)
        )
        sample = parser.get_parsed_content("preprocessing").transforms("inference")({"image": items[0]["image"]})
        image = sample["image"].as_tensor()
        if image.ndim - 1 > int(
            parser.get_parsed_content("network_def#spatial_dims")
        ):  # a 2D network on a volume: its middle slice
            image = image[..., image.shape[-1] // 2]
        written.append(save_gradcam_overlays(network, image, names, str(out / f"gradcam_{arm}.png")))
    return written


def write_gradcam_figure(results: dict, output_dir: str, classes: Sequence[str], arms: Sequence[str]) -> pathlib.Path:
    """Grad-CAM of ``classes`` for the networks of ``arms`` (their first common seed) on one image of the first
    evaluation split: the image with the most reference pixels of ``classes[0]`` (a rule, not a pick)."""
    from medseg_dropclass.study.pooled import write_gradcam_comparison
    from medseg_dropclass.study.report import finished_arms, finished_seeds

    out = pathlib.Path(output_dir)
    names, split = results["class_names"], results["splits"][0]
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise ValueError(f"Grad-CAM class(es) {unknown} not in {names}")
    finished = finished_arms(results)
    arms = [a for a in arms if a in finished]
    common = finished_seeds(results, *arms)
    if not common:
        raise ValueError(f"no seed finished by every one of {arms}")
    kept = [s for s in common if all(_has_weights(out / a / f"seed{s}" / "run") for a in arms)]
    if not kept:
        raise ValueError(
            f"no seed of {arms} under {out} keeps every arm's checkpoint (runs reused from committed results keep "
            "only result.json and args.json)"
        )
    seed = str(kept[0])
    cases = results["arms"][arms[0]]["seeds"][seed]["summaries"][split]["metric_per_case"]
    index = max(range(len(cases)), key=lambda i: cases[i]["metrics"][classes[0]]["n_ref"])
    networks, sample = {}, None
    for arm in arms:
        parser = bundle_parser(results["bundle"], json.loads((out / arm / f"seed{seed}" / "args.json").read_text()))
        networks[arm] = load_final_network(parser, out / arm / f"seed{seed}" / "run")
        if sample is None:
            items = (
                parser.get_parsed_content("val_datalist")
                if split == "validation"
                else parser.get_parsed_content("datalist")(split)
            )
            sample = parser.get_parsed_content("preprocessing").transforms("evaluate")(dict(items[index]))
    image, label = sample["image"].as_tensor().float(), sample["label"].as_tensor()[0].numpy()
    path = out / f"gradcam_{'_'.join(classes)}.png"
    return write_gradcam_comparison(networks, image, label, names, [names.index(c) for c in classes], path)


def compare_main(argv: Optional[List[str]] = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m medseg_dropclass compare", description=__doc__)
    parser.add_argument(
        "--study",
        default=None,
        metavar="FILE",
        help="run or resume the study a file describes (studies/<name>.yaml: bundle, dataset, arms, seeds, budget, "
        "endpoint); the options below that it sets are taken from it",
    )
    parser.add_argument(
        "--arms",
        nargs="+",
        default=None,
        help=f"known: {', '.join(ARMS)} (default: baseline dropclass); with --study, a part of its arms to run now "
        "(default: all; the report covers the whole study)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs trained side by side, each with cores/jobs threads (default 1: one run at a time on every core)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=5,
        help="number of seeds (0, 1, ...); docs/STUDY_DESIGN.md asks for >= 5 where a run costs minutes",
    )
    parser.add_argument(
        "--seed-ids",
        type=int,
        nargs="+",
        default=None,
        metavar="SEED",
        help="these seeds instead of 0..--seeds-1 (e.g. two studies side by side on the seeds of one output folder)",
    )
    parser.add_argument("--max-epochs", type=int, default=None, help="the 1x budget (default: the bundle's max_epochs)")
    parser.add_argument(
        "--output-dir", default="outputs/compare", help="the study folder (with --study: outputs/<study name>)"
    )
    parser.add_argument(
        "--bundle", default=BUNDLE, help="a shipped bundle's name or a bundle folder (default: %(default)s)"
    )
    parser.add_argument("--dataset-dir", default=None, help="a Decathlon-format dataset (default: the 2D phantoms)")
    parser.add_argument("--no-figures", action="store_true", help="skip the similarity heatmaps and Grad-CAM overlays")
    parser.add_argument(
        "--report-only", action="store_true", help="report the finished runs of a study in progress; train nothing"
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="bundle config overrides for every arm; VALUE is JSON (a bare word is a string), never evaluated, "
        'e.g. split_scheme=shift, max_epochs=10, class_names=\'["a", "b"]\'',
    )
    parser.add_argument(
        "--eval-splits", nargs="+", default=None, help="labelled splits to score, in-distribution first (default: all)"
    )
    parser.add_argument(
        "--endpoint-classes", nargs="+", default=None, help="the primary endpoint's classes (default: those under 1%%)"
    )
    parser.add_argument(
        "--pooled-iou",
        action="store_true",
        help="also report dataset-level IoU per class (report_pooled_iou.md; the street-scene convention); needs --endpoint-classes",
    )
    parser.add_argument(
        "--similarity-pairs",
        nargs="+",
        default=[],
        metavar="A:B",
        help="class pairs whose classifier-weight cosine similarity the pooled report tabulates, e.g. Pole:SignSymbol",
    )
    parser.add_argument(
        "--contrasts",
        nargs="+",
        default=[],
        metavar="ARM:ARM",
        help="further paired differences of the endpoint (secondary, not in the Holm family), e.g. dropclass:head_control",
    )
    parser.add_argument(
        "--gradcam-classes",
        nargs="+",
        default=[],
        metavar="CLASS",
        help="with --pooled-iou: Grad-CAM of these classes, baseline vs the other arms (gradcam_<classes>.png)",
    )
    args = parser.parse_args(argv)
    study = None
    if args.study is not None:
        from medseg_dropclass.study.study_file import load_study

        try:
            study = load_study(args.study)
        except ValueError as error:
            parser.error(str(error))
        registry = {**ARMS, **study.arms}
        chunk_arms = args.arms if args.arms is not None else list(study.arms)  # given = a part, even the default's
        chunk_seeds = args.seed_ids if args.seed_ids is not None else list(study.seeds)
        outside = [a for a in chunk_arms if a not in study.arms] + [
            f"seed {s}" for s in chunk_seeds if s not in study.seeds
        ]
        if outside:
            parser.error(
                f"--arms/--seed-ids with --study run a part of the study; {outside} not in {args.study} "
                f"(arms {list(study.arms)}, seeds {list(study.seeds)})"
            )
        args.bundle, args.dataset_dir, args.arms, args.seed_ids = (
            study.bundle,
            study.dataset_dir,
            chunk_arms,
            chunk_seeds,
        )
        args.max_epochs, args.eval_splits, args.endpoint_classes = (
            study.max_epochs,
            study.eval_splits,
            study.endpoint_classes,
        )
        args.pooled_iou, args.gradcam_classes = study.pooled_iou, study.gradcam_classes
        args.similarity_pairs = [f"{a}:{b}" for a, b in study.similarity_pairs]
        args.contrasts = [f"{a}:{b}" for a, b in study.contrasts]
        args.set = [f"{k}={json.dumps(v)}" for k, v in study.overrides.items()] + list(args.set)
        if args.output_dir == parser.get_default("output_dir"):
            args.output_dir = f"outputs/{study.name}"
        from medseg_dropclass.study.study_file import reuse_committed_runs

        reused = reuse_committed_runs(study, pathlib.Path(args.output_dir))
        if reused:
            print(
                f"{len(reused)} committed run(s) of {args.study} copied into {args.output_dir} (reused, not retrained): {', '.join(reused)}"
            )
    else:
        registry = ARMS
        args.arms = args.arms if args.arms is not None else ["baseline", "dropclass"]
    extra = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set {item!r}: expected KEY=VALUE")
        try:
            extra[key] = json.loads(value)
        except json.JSONDecodeError:
            if value[:1] in '[{"':
                parser.error(f"--set {item!r}: {value!r} is not valid JSON")
            extra[key] = value  # a bare word: the string itself (a literal; nothing in it is evaluated)
    pairs, contrasts = [], []
    for option, items, into in (
        ("--similarity-pairs", args.similarity_pairs, pairs),
        ("--contrasts", args.contrasts, contrasts),
    ):
        for item in items:
            first, sep, second = item.partition(":")
            if not sep or not first or not second:
                parser.error(f"{option} {item!r}: expected A:B")
            into.append((first, second))
    unknown = sorted({a for pair in contrasts for a in pair} - set(args.arms))
    if unknown and study is None:  # a study file's contrasts are checked against all its arms when it is read
        parser.error(f"--contrasts: arm(s) {unknown} not among --arms {args.arms}")
    if not args.pooled_iou:
        unused = [
            o
            for o, v in (
                ("--similarity-pairs", pairs),
                ("--gradcam-classes", args.gradcam_classes),
            )
            if v
        ]
        if unused:
            parser.error(f"{', '.join(unused)}: only with --pooled-iou (they belong to the pooled-IoU report)")
    if args.pooled_iou and not args.endpoint_classes:
        parser.error("--pooled-iou needs --endpoint-classes (the primary endpoint's classes, named before the runs)")
    if args.seeds < 1 or (args.max_epochs is not None and args.max_epochs < 1):
        parser.error("--seeds and --max-epochs must be >= 1")
    if args.seed_ids is not None and (min(args.seed_ids) < 0 or len(set(args.seed_ids)) != len(args.seed_ids)):
        parser.error(f"--seed-ids {args.seed_ids}: distinct seeds >= 0")
    seeds = list(args.seed_ids) if args.seed_ids is not None else list(range(args.seeds))
    unknown = [a for a in args.arms if a not in registry]
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; known: {', '.join(registry)}")
    try:  # every --set key is one the bundle has, before anything trains
        bundle_parser(args.bundle, extra)
    except (ConfigKeyError, FileNotFoundError) as error:
        parser.error(str(error))
    max_epochs = (
        args.max_epochs if args.max_epochs is not None else int(bundle_parser(args.bundle, {}).get("max_epochs"))
    )
    try:
        with folder_lock(str(pathlib.Path(args.output_dir).resolve()), "study folder"):
            _compare(parser, args, seeds, max_epochs, extra, pairs, contrasts, registry, study)
    except (FolderLockedError, ConfigKeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


def _compare(parser, args, seeds, max_epochs, extra, pairs, contrasts, registry, study) -> None:
    try:
        results = run_study(
            args.output_dir,
            args.arms,
            seeds,
            max_epochs,
            args.dataset_dir,
            args.bundle,
            extra_overrides=extra,
            train=not args.report_only,
            eval_splits=args.eval_splits,
            endpoint_classes=args.endpoint_classes,
            named_classes={
                "--similarity-pairs": [c for pair in pairs for c in pair],
                "--gradcam-classes": args.gradcam_classes,
            },
            registry=registry,
            jobs=args.jobs,
        )
    except ValueError as error:  # bad arguments or another study's folder: the message names it
        parser.error(str(error))
    if not any(entry["seeds"] for entry in results["arms"].values()):
        print(
            f"error: no finished run of {', '.join(args.arms)} under {args.output_dir} yet: nothing to report",
            file=sys.stderr,
        )
        sys.exit(1)
    from medseg_dropclass.study.study_file import study_results, write_reports, write_study_reports

    if study is None:
        written = write_reports(results, pathlib.Path(args.output_dir), contrasts, pairs if args.pooled_iou else None)
    else:  # the report of a study file: from its runs' own results, with the file's identity
        results = study_results(study, pathlib.Path(args.output_dir))
        written = write_study_reports(study, results, pathlib.Path(args.output_dir))
    if not args.no_figures:
        write_figures(results, args.output_dir)
    print(written[0].read_text())
    print(f"report: {written[0]}")
    if args.pooled_iou:
        pooled = written[1]
        if args.gradcam_classes:
            try:
                figure = write_gradcam_figure(results, args.output_dir, args.gradcam_classes, args.arms)
            except ValueError as error:  # e.g. every run reused from committed results: the report stands without it
                print(f"Grad-CAM not drawn: {error}")
            else:
                with pooled.open("a") as text:
                    text.write(
                        f"\n## Grad-CAM\n\n![Grad-CAM of {', '.join(args.gradcam_classes)} per arm]({figure.name})\n"
                    )
        print(pooled.read_text())
        print(f"pooled-IoU report: {pooled}")
