import json
import os
import pathlib
import shutil

import numpy as np
import pytest
import torch

from medseg_dropclass.apps.cli import main
from medseg_dropclass.study.compare import ARMS, drop_seed, run_study, write_figures
from medseg_dropclass.study.report import collapse_events, primary_endpoint, rare_classes, write_report

NAMES = ["background", "organ", "lesion"]


def fake_results(values, seeds=(0, 1, 2, 3, 4)):
    """results.json as run_study writes it, from ``{arm: {split: (S, N, K) Dice}}``."""
    results = {
        "bundle": "phantom2d_dropclass",
        "class_names": NAMES,
        "class_share": [0.9, 0.095, 0.005],
        "splits": ["test", "test_shifted"],
        "max_epochs": 10,
        "seeds": list(seeds),
        "arms": {},
    }
    for arm, per_split in values.items():
        entry = {"description": arm, "budget": 1, "reference": "baseline", "seeds": {}}
        for s, seed in enumerate(seeds):
            summaries = {}
            for split, array in per_split.items():
                cases = [
                    {
                        "metrics": {
                            n: {"Dice": float(array[s, i, k]), "IoU": float(array[s, i, k])}
                            for k, n in enumerate(NAMES)
                        }
                    }
                    for i in range(array.shape[1])
                ]
                bins = {
                    b: {"Dice": float(np.nanmean(array[s, :, k]))} for b, k in (("<0.1%", 2), ("0.1-1%", 2), (">1%", 1))
                }
                summaries[split] = {"metric_per_case": cases, "frequency_bins": bins}
            entry["seeds"][str(seed)] = {
                "summaries": summaries,
                "cost": {"seconds": 10.0, "peak_memory_mib": 100.0, "images_per_second": 5.0},
                "similarity": {
                    "most_frequent_mean_similarity": 0.1,
                    "least_frequent_mean_similarity": 0.2,
                    "mean_off_diagonal": 0.3,
                },
            }
        results["arms"][arm] = entry
    return results


def test_primary_endpoint_and_report_values(tmp_path):
    rng = np.random.default_rng(0)
    shape = (5, 40, 3)
    base_test = np.clip(rng.normal(0.8, 0.05, shape), 0, 1)
    base_shift = base_test - np.array([0, 0.0, 0.4])  # the baseline loses 0.4 on the lesion under the shift
    arm_test = base_test.copy()
    arm_shift = base_test - np.array([0, 0.0, 0.1])  # the arm loses only 0.1
    arm_test[2, :, 2] = 0.0  # seed 2 of the arm lost the lesion in distribution: a collapse event
    arm_shift[2, :, 2] = 0.0
    results = fake_results(
        {
            "baseline": {"test": base_test, "test_shifted": base_shift},
            "dropclass": {"test": arm_test, "test_shifted": arm_shift},
        }
    )
    assert rare_classes(results) == [2]
    primary = primary_endpoint(results, "dropclass", "baseline", n_resamples=500)
    assert primary["drop"].estimate[0] == pytest.approx((0.1 * 4 + 0.0) / 5)  # seed 2 has no drop (0 - 0)
    expected = (0.1 * 4 + 0.0) / 5 - 0.4
    assert primary["drop_minus_reference"].estimate[0] == pytest.approx(expected)
    assert primary["drop_minus_reference"].low[0] < expected < primary["drop_minus_reference"].high[0]
    assert collapse_events(results, "dropclass") == (1, 5, ["seed 2: lesion"])
    report = write_report(results, str(tmp_path), n_resamples=200).read_text()
    assert "| dropclass | 1 / 5 | [0.01, 0.72] | seed 2: lesion |" in report  # Clopper-Pearson of 1/5
    assert "| dropclass | " in report and f"{expected:+.3f} [" in report
    assert (tmp_path / "delta_dice_vs_share.png").stat().st_size > 5000
    assert report.splitlines()[2].startswith("**Rare classes** (lesion;")


def test_one_seed_report_says_no_interval(tmp_path):
    values = np.full((1, 4, 3), 0.5)
    results = fake_results(
        {
            "baseline": {"test": values, "test_shifted": values},
            "dropclass": {"test": values, "test_shifted": values - 0.1},
        },
        seeds=(0,),
    )
    report = write_report(results, str(tmp_path), n_resamples=50).read_text()
    assert "One seed: no interval can be given" in report and "**One seed: no interval can be given**" in report
    assert "| dropclass | 0.500 | 0.400 | +0.100 | +0.000 (`baseline`) | +0.100 | n/a |" in report


def test_comparison_pipeline_end_to_end_and_resume(phantom2d, tmp_path, capsys):
    arms = ["baseline", "head_control"]
    results = run_study(str(tmp_path), arms, [0], 1, dataset_dir=str(phantom2d), extra_overrides={"batch_size": 2})
    for arm in arms:
        entry = results["arms"][arm]["seeds"]["0"]
        assert (
            entry["cost"]["seconds"] > 0
            and entry["cost"]["peak_memory_mib"] > 50
            and entry["cost"]["images_per_second"] > 0
        )
        assert entry["cost"]["threads"] == torch.get_num_threads()  # what a bitwise regeneration must match
        assert entry["cost"]["machine_load"] >= 0  # the load average while it trained: other work beside it shows
        log = (tmp_path / arm / "seed0" / "train.log").read_text()
        assert log.startswith("=== ") and "Epoch[1] Complete" in log  # sittings appended, headed
        assert "%|" not in log  # no progress bars in the log
        assert entry["overrides"]["drop_seed"] == drop_seed(arm, 0)
        summary = json.loads((tmp_path / arm / "seed0" / "eval_test_shifted" / "summary.json").read_text())
        assert len(summary["metric_per_case"]) == 2 and set(summary["frequency_bins"]) == {"<0.1%", "0.1-1%", ">1%"}
    assert drop_seed("baseline", 0) != drop_seed("dropclass", 0) != drop_seed("dropclass", 1)
    # a second call reuses the finished runs (nothing retrained) and returns the same numbers
    capsys.readouterr()
    again = run_study(str(tmp_path), arms, [0], 1, dataset_dir=str(phantom2d), extra_overrides={"batch_size": 2})
    assert capsys.readouterr().out.count("finished earlier: reused") == 2
    assert again["arms"]["baseline"]["seeds"]["0"]["summaries"] == json.loads(
        json.dumps(results["arms"]["baseline"]["seeds"]["0"]["summaries"])
    )
    # ... also where the same dataset lies elsewhere (a study's result.json files committed and reused on another machine)
    moved = tmp_path / "elsewhere" / phantom2d.name
    shutil.copytree(phantom2d, moved)
    run_study(str(tmp_path), arms, [0], 1, dataset_dir=str(moved), extra_overrides={"batch_size": 2})
    assert capsys.readouterr().out.count("finished earlier: reused") == 2
    # a report of a study in progress: finished runs collected, nothing trained for the arm not run yet
    partial = run_study(
        str(tmp_path),
        arms + ["dropclass"],
        [0],
        1,
        dataset_dir=str(phantom2d),
        extra_overrides={"batch_size": 2},
        train=False,
    )
    assert partial["arms"]["dropclass"]["seeds"] == {} and not (tmp_path / "dropclass" / "seed0").exists()
    assert (
        "| dropclass |"
        not in write_report(partial, str(tmp_path / "partial"), n_resamples=20)
        .read_text()
        .split("## Primary endpoint")[1]
    )
    with pytest.raises(ValueError, match=r"result.json was produced with other settings"):
        run_study(str(tmp_path), ["baseline"], [0], 2, dataset_dir=str(phantom2d), extra_overrides={"batch_size": 2})
    # a finished run not scored on a split the study asks for (e.g. shared from another study) is refused, named
    with pytest.raises(
        ValueError, match=r"baseline/seed0/result.json holds no evaluation on split\(s\) \['validation'\]"
    ):
        run_study(
            str(tmp_path),
            ["baseline"],
            [0],
            1,
            dataset_dir=str(phantom2d),
            extra_overrides={"batch_size": 2},
            eval_splits=["test", "validation"],
        )
    report = write_report(results, str(tmp_path), n_resamples=50).read_text()
    assert "| lesion_c |" in report and "## Primary endpoint" in report and "images / s" in report
    assert (tmp_path / "validation_baseline.png").stat().st_size > 5000 and "validation_baseline.png" in report
    figures = write_figures(results, str(tmp_path))
    assert {p.name for p in figures} == {
        "similarity_baseline.png",
        "gradcam_baseline.png",
        "similarity_head_control.png",
        "gradcam_head_control.png",
    }


def test_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--arms", "baseline", "dropclass_alpha7"])
    assert "unknown arm(s) ['dropclass_alpha7']" in capsys.readouterr().err
    assert {
        "baseline",
        "baseline_2x",
        "head_control",
        "dropclass",
        "dropclass_2x",
        "dropclass_host",
        "dropclass_detach",
    } <= set(ARMS)
    assert ARMS["dropclass_2x"].reference == "baseline_2x" and ARMS["dropclass_2x"].budget == 2
    for argv, message in (
        (["--seed-ids", "1", "1"], "--seed-ids [1, 1]: distinct seeds >= 0"),
        (["--similarity-pairs", "Pole"], "--similarity-pairs 'Pole': expected A:B"),
        (["--contrasts", "dropclass:head_control"], "--contrasts: arm(s) ['head_control'] not among --arms"),
        (["--gradcam-classes", "Pole"], "--gradcam-classes: only with --pooled-iou"),
    ):
        with pytest.raises(SystemExit):
            main(["compare", "--arms", "baseline", "dropclass", *argv])
        assert message in capsys.readouterr().err


def test_a_part_of_a_study_trains_the_arms_named_even_the_default_pair(tmp_path, monkeypatch):
    """--study with --arms runs those arms only (``baseline dropclass`` was taken for "not given" and ran the whole
    study), and the study's contrasts are checked against all its arms, not the part (it refused a part without one
    of them)."""
    import medseg_dropclass.study.compare as compare

    asked = []

    def stop(output_dir, arms, seeds, *args, **kwargs):
        asked.append((list(arms), list(seeds)))
        raise SystemExit(0)

    monkeypatch.setattr(compare, "run_study", stop)
    monkeypatch.setattr("medseg_dropclass.study.study_file.reuse_committed_runs", lambda *a: [])
    study = str(pathlib.Path(__file__).parents[2] / "studies" / "camvid.yaml")
    for arms in (["baseline", "dropclass"], ["head_control", "dropclass_alpha_scaled", "baseline_2x"]):
        with pytest.raises(SystemExit):
            main(["compare", "--study", study, "--arms", *arms, "--seed-ids", "3", "--output-dir", str(tmp_path)])
        assert asked[-1] == (arms, [3])


def test_misnamed_report_classes_fail_before_any_training(phantom2d, tmp_path, capsys):
    """A typo in --gradcam-classes / --similarity-pairs is reported at once, not after the study has trained."""
    common = [
        "compare",
        "--dataset-dir",
        str(phantom2d),
        "--output-dir",
        str(tmp_path / "out"),
        "--seeds",
        "1",
        "--max-epochs",
        "1",
        "--pooled-iou",
        "--endpoint-classes",
        "lesion_a",
    ]
    for extra, message in (
        (["--gradcam-classes", "lesion_a", "lesion_x"], "--gradcam-classes: class(es) ['lesion_x'] not in"),
        (["--similarity-pairs", "lesion_a:organ_huge"], "--similarity-pairs: class(es) ['organ_huge'] not in"),
    ):
        with pytest.raises(SystemExit):
            main([*common, *extra])
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "baseline").exists()  # nothing trained


def test_every_arm_builds_its_loss_sampler_network_and_optimizer(phantom2d):
    """Each arm's overrides are valid config: the parts they change are instantiated and carry the setting."""
    from medseg_dropclass.engine.bundles import bundle_parser
    from medseg_dropclass.study.compare import BUNDLE

    for name, arm in ARMS.items():
        parser = bundle_parser(BUNDLE, {"dataset_dir": str(phantom2d), **arm.overrides})
        loss = parser.get_parsed_content("loss")
        controller = parser.get_parsed_content("dropclass_controller")
        network = parser.get_parsed_content("network_def")
        optimizer = parser.get_parsed_content("optimizer")
        assert controller.enabled == arm.overrides.get("dropclass", True), name
        assert loss.alpha == arm.overrides.get("alpha", 1.0), name
        assert type(optimizer).__name__ == ("AdamW" if arm.overrides.get("optimizer_name") == "adam" else "SGD"), name
        assert getattr(network.head, "detach_dropped_class", False) == arm.overrides.get(
            "detach_dropped_class", False
        ), name
        if name == "dropclass_host":
            weights = controller.sampler.weights
            assert (
                weights[0] == 0 and all(w == 0 for w in weights[4:]) and sum(weights[1:4]) > 0
            )  # organs around lesions
        if name == "dropclass_alpha_scaled":
            assert loss.effective_alpha(7) == pytest.approx(10 * 7 / 19)
        if name == "dropclass_keep_z_dice":
            assert loss.dropped_dice_without_z is False
        if name == "head_control":
            assert controller.sampler(1.0) is None
        pixel = {
            "dicefocal": "MaskedFocalLoss",
            "topk": "TopKCrossEntropyLoss",
            "logit_adjusted": "LogitAdjustedCrossEntropyLoss",
        }
        if name in pixel:  # the alternatives: one change each, the loss's pixel term
            assert type(loss.base_loss.pixel_loss).__name__ == pixel[name], name
        if "copy_paste" in name:
            steps = parser.get_parsed_content("train#dataset").transform.transforms
            assert any(type(t).__name__ == "RandCopyPasted" for t in steps), name
        if name == "class_first":
            assert type(parser.get_parsed_content("train#dataloader").sampler).__name__ == "ClassFirstSampler"


def test_validation_curves_read_the_tensorboard_logs(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from medseg_dropclass.study.report import validation_curves

    for run, values in (("a", [0.1, 0.5]), ("b", [0.3])):
        writer = SummaryWriter(str(tmp_path / run / "tensorboard"))
        for epoch, value in zip((10, 20), values):
            writer.add_scalar("dice/lesion", value, epoch)
        writer.close()
    curves = validation_curves([tmp_path / "a", tmp_path / "b"], ["lesion", "organ"])
    assert curves["epochs"].tolist() == [10, 20]
    np.testing.assert_allclose(curves["lesion"], [[0.1, 0.5], [0.3, np.nan]], rtol=1e-6)
    assert np.isnan(curves["organ"]).all()


def test_report_of_a_study_in_progress_pairs_the_finished_seeds(tmp_path):
    rng = np.random.default_rng(3)
    base = rng.uniform(0.5, 0.9, (5, 10, 3))
    results = fake_results(
        {
            "baseline": {"test": base, "test_shifted": base - 0.2},
            "dropclass": {"test": base + 0.05, "test_shifted": base - 0.1},
        }
    )
    for seed in ("3", "4"):  # dropclass has finished seeds 0-2 only
        del results["arms"]["dropclass"]["seeds"][seed]
    primary = primary_endpoint(results, "dropclass", "baseline", n_resamples=200)
    # drop: (0.05 - (-0.1)) - (0 - (-0.2)) = -0.05 on seeds 0-2, paired with the baseline's same seeds
    assert (
        primary["drop_minus_reference"].estimate[0] == pytest.approx(-0.05)
        and primary["drop_minus_reference"].seeds == 3
    )
    assert collapse_events(results, "dropclass") == (0, 3, [])
    report = write_report(results, str(tmp_path), n_resamples=100).read_text()
    # every number on the seeds both arms finished, so the difference equals the columns beside it
    assert (
        "| dropclass | dropclass | 1x | 3 | baseline |" in report and "| baseline | baseline | 1x | 3 | - |" in report
    )
    assert "Runs of seeds not finished by every arm are left out: `baseline` seed(s) 3, 4." in report


def test_finished_arms_are_those_with_a_finished_run_in_study_order():
    from medseg_dropclass.study.report import finished_arms, study_seeds

    base = np.full((5, 4, 3), 0.7)
    results = fake_results({"baseline": {"test": base}, "dropclass": {"test": base}, "topk": {"test": base}})
    results["arms"]["dropclass"]["seeds"] = {}  # not run yet
    del results["arms"]["topk"]["seeds"]["4"]
    assert finished_arms(results) == ["baseline", "topk"]
    assert study_seeds(results) == [0, 1, 2, 3]  # the arm with no run does not empty the common seeds


def test_case_groups_select_the_cases_by_file_name():
    from medseg_dropclass.study.report import case_groups, case_matrix

    def case(name, dice):
        return {"reference": f"/d/labelsTr/{name}.nii.gz", "metrics": {"bg": {"Dice": 1.0}, "rv": {"Dice": dice}}}

    summary = {
        "metric_per_case": [
            case("acdc_patient001_ED", 0.9),
            case("acdc_patient001_ES", 0.5),
            case("acdc_patient002_ED", 0.7),
        ],
        "groups": {"ED": {"match": "_ED.", "cases": 2}, "ES": {"cases": 1}},
    }
    results = {
        "class_names": ["bg", "rv"],
        "seeds": [0],
        "arms": {"a": {"seeds": {"0": {"summaries": {"test": summary}}}}},
    }
    assert case_groups(results, "test") == {"ED": "_ED.", "ES": "_ES."}  # "match" stored, or the phase's default
    assert case_matrix(results, "a", "test", group="_ED.")[0, :, 1].tolist() == [0.9, 0.7]
    assert case_matrix(results, "a", "test", group="_ES.")[0, :, 1].tolist() == [0.5]
    assert case_matrix(results, "a", "test").shape == (1, 3, 2)


def test_runs_side_by_side_are_evaluated_as_each_ends_and_a_failure_stops_none(phantom2d, tmp_path, monkeypatch):
    """--jobs: a run is evaluated (in the calling thread) as soon as its training ends, while the others still train;
    a failed run does not cost the others their evaluation, and its error is raised after them."""
    import threading
    import time

    import medseg_dropclass.study.compare as compare

    events = []
    registry = {"baseline": ARMS["baseline"], "broken": ARMS["head_control"]}

    def train(bundle, arm, seed, full, arm_dir, threads=None, side_by_side=1):
        assert side_by_side == 2 and threads == max(1, (os.cpu_count() or 1) // 2)  # recorded with its wall time
        if arm == "broken":
            raise RuntimeError(f"training {arm_dir} failed (exit 1)")
        time.sleep(1.5 if seed == 1 else 0.1)
        events.append(("trained", seed, time.monotonic()))
        return {"seconds": 1.0, "peak_memory_mib": 1.0, "threads": threads}, None

    def train_and_evaluate(bundle, arm, seed, full, arm_dir, splits, share, trained=None):
        assert threading.current_thread() is threading.main_thread() and trained is not None
        events.append(("evaluated", seed, time.monotonic()))
        arm_dir.mkdir(parents=True, exist_ok=True)
        entry = {"overrides": full, "cost": trained[0], "resumed": False, "summaries": {s: {} for s in splits}}
        (arm_dir / "result.json").write_text(json.dumps(entry))
        return entry

    monkeypatch.setattr(compare, "_train", train)
    monkeypatch.setattr(compare, "_train_and_evaluate", train_and_evaluate)
    with pytest.raises(RuntimeError, match=r"broken/seed[01] failed"):
        run_study(
            str(tmp_path), ["baseline", "broken"], [1, 0], 1, dataset_dir=str(phantom2d), jobs=2, registry=registry
        )
    when = {(kind, seed): t for kind, seed, t in events}
    assert set(when) == {("trained", 0), ("trained", 1), ("evaluated", 0), ("evaluated", 1)}
    assert when[("evaluated", 0)] < when[("trained", 1)]  # evaluated while seed 1 still trained
    saved = json.loads((tmp_path / "results.json").read_text())
    assert list(saved["arms"]["baseline"]["seeds"]) == ["1", "0"] and saved["arms"]["broken"]["seeds"] == {}
