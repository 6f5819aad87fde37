"""Study files: every one parses, names known arms and classes; every committed study report is exactly what
``study-report`` writes from the committed per-run results (a hand edit or a stale report fails here)."""

import pathlib

import pytest

from medseg_dropclass.study.study_file import load_study, missing_runs, study_results, write_study_reports

REPO = pathlib.Path(__file__).resolve().parents[2]
STUDIES = sorted((REPO / "studies").glob("*.yaml"))


def test_the_studies_are_files():
    assert {p.stem for p in STUDIES} >= {
        "phantom_v2",
        "acdc_common",
        "acdc_shift",
        "acdc_shift_budget",
        "camvid",
        "acdc_shift_dcm_replication",
        "alternatives_phantoms",
        "alternatives_camvid",
        "alternatives_acdc",
    }


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_every_study_file_parses(path):
    study = load_study(str(path))
    assert study.name == path.stem and study.arms and len(study.seeds) >= 5 and study.endpoint_classes
    for name, arm in study.arms.items():
        assert arm.reference in study.arms or name == "baseline" or arm.reference == "baseline", name


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_compare_takes_every_study_file_to_its_runs(path, tmp_path, monkeypatch):
    """``compare --study`` gets every committed study file past its argument checks to the runs (it refused
    alternatives_phantoms: its contrasts were taken for pooled-IoU options)."""
    import medseg_dropclass.study.compare as compare
    from medseg_dropclass.apps.cli import main

    asked = []

    def stop(output_dir, arms, seeds, *args, **kwargs):
        asked.append((list(arms), list(seeds), kwargs["eval_splits"]))
        raise SystemExit(0)

    monkeypatch.setattr(compare, "run_study", stop)
    monkeypatch.setattr("medseg_dropclass.study.study_file.reuse_committed_runs", lambda *a: [])
    with pytest.raises(SystemExit) as stopped:
        main(["compare", "--study", str(path), "--output-dir", str(tmp_path)])
    study = load_study(str(path))
    assert stopped.value.code == 0 and asked == [(list(study.arms), list(study.seeds), study.eval_splits)]


COMMITTED = [p for p in STUDIES if ((REPO / load_study(str(p)).results) / "results").is_dir()]


@pytest.mark.parametrize("path", COMMITTED, ids=[p.stem for p in COMMITTED])
def test_committed_reports_are_what_the_command_writes(path, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the study files name their folders relative to the repository
    study = load_study(str(path.relative_to(REPO)))
    results = study_results(study, study.results / "results")
    for written in write_study_reports(study, results, tmp_path):
        committed = study.results / written.name
        assert committed.read_text() == written.read_text(), (
            f"{committed} differs from what `python -m medseg_dropclass study-report {path.relative_to(REPO)}` writes; rerun it"
        )


def test_a_study_in_progress_names_its_missing_runs(tmp_path):
    (tmp_path / "s.yaml").write_text(
        "name: s\nbundle: phantom2d_dropclass\nmax_epochs: 2\nseeds: [0, 1, 2, 3, 4]\narms: [baseline, dropclass]\n"
        "endpoint_classes: [lesion_a]\nresults: out\n"
    )
    study = load_study(str(tmp_path / "s.yaml"))
    assert missing_runs(study, tmp_path) == [f"{a} seed {s}" for a in ("baseline", "dropclass") for s in range(5)]
    with pytest.raises(FileNotFoundError, match="no finished run"):
        study_results(study, tmp_path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: s\n", r"missing key\(s\) \['bundle'"),
        (
            "name: s\nbundle: b\nmax_epochs: 2\nseeds: [0]\narms: [nope]\nendpoint_classes: [a]\nresults: r\n",
            "unknown arm 'nope'",
        ),
        (
            "name: s\nbundle: b\nmax_epochs: 2\nseeds: [0, 0]\narms: [baseline]\nendpoint_classes: [a]\nresults: r\n",
            "seeds must be distinct",
        ),
        (
            "name: s\nbundle: b\nmax_epochs: 2\nseeds: [0]\narms: [baseline]\nendpoint_classes: [a]\nresults: r\nendpoint: x\n",
            r"unknown key\(s\) \['endpoint'\]",
        ),
        (
            "name: s\nbundle: b\nmax_epochs: 2\nseeds: [0]\narms: [{mine: {description: x}}]\nendpoint_classes: [a]\nresults: r\n",
            "arm 'mine': expected description, overrides",
        ),
        (
            "name: s\nbundle: b\nmax_epochs: 2\nseeds: [0]\narms: [baseline]\nendpoint_classes: [a]\nresults: r\n"
            "contrasts: ['dropclass:baseline']\n",
            r"contrasts name arm\(s\) \['dropclass'\] the study does not run",
        ),
    ],
)
def test_a_bad_study_file_is_named(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ValueError, match=rf"bad.yaml: .*{message}"):
        load_study(str(tmp_path / "bad.yaml"))


STUDY_TEXT = "name: {name}\nbundle: phantom2d_dropclass\nmax_epochs: {epochs}\nseeds: [0, 1]\narms: {arms}\nendpoint_classes: [lesion_a]\nresults: {name}_results\n"


def test_a_study_reuses_the_runs_of_a_study_it_shares_runs_with(tmp_path):
    """Only arms both run, only this study's seeds, its own committed runs first; the copied files are the other's."""
    from medseg_dropclass.study.study_file import reuse_committed_runs

    (tmp_path / "first.yaml").write_text(STUDY_TEXT.format(name="first", epochs=3, arms="[baseline, dropclass]"))
    (tmp_path / "second.yaml").write_text(
        STUDY_TEXT.format(name="second", epochs=3, arms="[baseline, head_control]") + "shares_runs_with: [first]\n"
    )
    for study, arm, seed in [
        ("first", "baseline", 0),
        ("first", "baseline", 1),
        ("first", "dropclass", 0),
        ("second", "baseline", 1),
    ]:
        run = tmp_path / f"{study}_results" / "results" / arm / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "result.json").write_text(f'{{"from": "{study}"}}')
    second = load_study(str(tmp_path / "second.yaml"))
    assert [other.name for other in second.shares_runs_with] == ["first"]
    copied = reuse_committed_runs(second, tmp_path / "out")
    assert copied == ["baseline seed 1", "baseline seed 0 (from first)"]
    assert (tmp_path / "out" / "baseline" / "seed0" / "result.json").read_text() == '{"from": "first"}'
    assert (tmp_path / "out" / "baseline" / "seed1" / "result.json").read_text() == '{"from": "second"}'
    assert not (tmp_path / "out" / "dropclass").exists()


@pytest.mark.parametrize(
    "other, sharing, message",
    [
        (None, "[first]", r"bad.yaml: shares_runs_with: no study file .*first.yaml"),
        (
            STUDY_TEXT.format(name="first", epochs=4, arms="[baseline]"),
            "[first]",
            "bad.yaml: cannot share runs with .*first.yaml: max_epochs 3 there 4",
        ),
        (
            STUDY_TEXT.format(name="first", epochs=3, arms="[dropclass]"),
            "[first]",
            "bad.yaml: cannot share runs with .*first.yaml: no arm in common",
        ),
        (
            STUDY_TEXT.format(
                name="first", epochs=3, arms="[{baseline: {description: mine, overrides: {batch_size: 2}}}]"
            ),
            "[first]",
            r"bad.yaml: cannot share runs with .*first.yaml: arm\(s\) \['baseline'\] defined differently",
        ),
        (
            STUDY_TEXT.format(name="first", epochs=3, arms="[baseline]") + "shares_runs_with: [bad]\n",
            "[first]",
            r"first.yaml: shares_runs_with: .*bad.yaml shares back \(a circle\)",
        ),
    ],
)
def test_a_study_shares_runs_only_with_one_that_trains_them_alike(tmp_path, other, sharing, message):
    if other is not None:
        (tmp_path / "first.yaml").write_text(other)
    (tmp_path / "bad.yaml").write_text(
        STUDY_TEXT.format(name="bad", epochs=3, arms="[baseline]") + f"shares_runs_with: {sharing}\n"
    )
    with pytest.raises(ValueError, match=message):
        load_study(str(tmp_path / "bad.yaml"))


def test_the_committed_decision_table_is_what_its_command_writes(tmp_path, monkeypatch):
    """docs/alternatives_decision.md names the command that writes it; run again, it writes the same file."""
    import shlex

    from medseg_dropclass.study.study_file import study_report_main

    committed = REPO / "docs" / "alternatives_decision.md"
    first, body = committed.read_text().split("\n", 1)
    command = shlex.split(first.removeprefix("<!-- generated by: ").removesuffix(" -->"))
    assert command[:4] == ["python", "-m", "medseg_dropclass", "study-report"]
    argv = command[4:]
    assert argv[-2:] == ["--decision-table", "docs/alternatives_decision.md"]
    monkeypatch.chdir(REPO)
    study_report_main(argv[:-1] + [str(tmp_path / committed.name)])
    assert (tmp_path / committed.name).read_text().split("\n", 1)[1] == body
    assert (tmp_path / committed.with_suffix(".png").name).stat().st_size > 0  # its figure, committed beside it
    assert (REPO / "docs" / committed.with_suffix(".png").name).is_file()


@pytest.mark.parametrize(
    "page, begin, end, also, least",
    [
        # the restated conclusions
        ("docs/RESULTS.md", "### The conclusions, restated", "archive/RESULTS_2026-11.md", (), 10),
        # the summary per situation and the reading
        ("docs/ALTERNATIVES.md", None, None, ("docs/alternatives_decision.md",), 10),
        # the summary of the findings
        ("README.md", "**What the studies found so far**", "## Quick start", ("docs/alternatives_decision.md",), 5),
    ],
)
def test_the_figures_a_page_quotes_come_from_the_generated_reports(page, begin, end, also, least):
    """Every ``x [a, b]`` figure a page quotes (in the section from ``begin`` to ``end``, or all of it) appears in a
    generated report (or in the generated files ``also``)."""
    import re

    section = (REPO / page).read_text()
    if begin is not None:
        section = section.split(begin, 1)[1].split(end, 1)[0]
    quoted = re.findall(r"[+-]?\d+\.\d+ \[[+-]?\d+\.\d+, [+-]?\d+\.\d+\]", section)
    reports = "\n".join(
        p.read_text() for study in STUDIES for p in (REPO / load_study(str(study)).results).glob("report*.md")
    ) + "".join((REPO / path).read_text() for path in also)
    missing = [q for q in quoted if q not in reports and q.lstrip("+") not in reports]
    assert len(quoted) >= least
    assert not missing, f"quoted in {page} but in no generated report: {missing}"


def test_a_study_file_runs_collects_and_reports(phantom2d, tmp_path, monkeypatch):
    """compare --study trains what the file names; study-report --collect commits the runs and writes the report the
    sync test then finds equal."""
    import json

    from medseg_dropclass.apps.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(
        f"name: tiny\nbundle: phantom2d_dropclass\ndataset_dir: {phantom2d}\nmax_epochs: 1\nseeds: [0]\n"
        "arms: [baseline, head_control]\nendpoint_classes: [lesion_a, lesion_b]\nresults: committed\n"
        "overrides: {batch_size: 2}\nquestion: does the pipeline run?\n"
    )
    main(["compare", "--study", "tiny.yaml", "--no-figures"])
    assert (tmp_path / "outputs" / "tiny" / "head_control" / "seed0" / "result.json").is_file()
    report = (tmp_path / "outputs" / "tiny" / "report.md").read_text()
    assert "Study file `tiny.yaml`" in report and "does the pipeline run?" in report
    assert report.startswith("# Study `tiny`: its arms side by side, per class\n")  # not "baseline vs DropClass"
    main(["study-report", "tiny.yaml", "--collect", "outputs/tiny", "--resamples", "50"])
    assert (
        json.loads((tmp_path / "committed" / "results" / "baseline" / "seed0" / "args.json").read_text())["max_epochs"]
        == 1
    )
    study = load_study("tiny.yaml")
    written = write_study_reports(
        study, study_results(study, study.results / "results"), tmp_path / "again", n_resamples=50
    )
    assert written[0].read_text() == (tmp_path / "committed" / "report.md").read_text()
    # a fresh output folder reuses the committed runs (nothing trained: no run folder appears), and a part of the study
    # is named by --arms/--seed-ids, which must be the study's own
    import shutil

    shutil.rmtree(tmp_path / "outputs")
    capsys_text = _run_and_capture(main, ["compare", "--study", "tiny.yaml", "--arms", "head_control"])
    assert "copied into outputs/tiny (reused, not retrained): baseline seed 0, head_control seed 0" in capsys_text
    assert not (tmp_path / "outputs" / "tiny" / "head_control" / "seed0" / "run").exists()
    # reused runs keep no weights: the figures that need none are drawn, Grad-CAM is said to be left out, not a crash
    assert (tmp_path / "outputs" / "tiny" / "similarity_head_control.png").stat().st_size > 5000
    assert "Grad-CAM of head_control not drawn: none of its runs under outputs/tiny/head_control keeps a" in capsys_text
    from medseg_dropclass.study.compare import write_gradcam_figure

    with pytest.raises(ValueError, match=r"no seed of \['baseline', 'head_control'\] under outputs/tiny keeps every"):
        write_gradcam_figure(
            study_results(study, tmp_path / "outputs" / "tiny"),
            "outputs/tiny",
            ["lesion_a"],
            ["baseline", "head_control"],
        )
    with pytest.raises(SystemExit) as stopped:
        main(["compare", "--study", "tiny.yaml", "--arms", "dropclass"])
    assert stopped.value.code == 2


def _run_and_capture(main, argv) -> str:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        main(argv)
    return buffer.getvalue()


def test_an_arm_in_progress_is_held_out_not_cutting_the_finished_arms(tmp_path):
    """Committed runs of an unfinished arm (and of an arm compared with it) stay out of the tables, which keep every
    seed of the finished arms; the report names them. With no arm finished, the seeds all arms share are reported."""
    import numpy as np

    from medseg_dropclass.study.report import write_report
    from medseg_dropclass.study.study_file import hold_out_unfinished_arms
    from tests.study.test_compare import fake_results

    base = np.random.default_rng(0).uniform(0.5, 0.9, (5, 6, 3))
    splits = {"test": base, "test_shifted": base - 0.2}
    arms = ("baseline", "dropclass", "baseline_2x", "dropclass_2x", "topk")
    results = fake_results({arm: splits for arm in arms})
    results["arms"]["dropclass_2x"]["reference"] = "baseline_2x"
    for seed in ("2", "3", "4"):
        del results["arms"]["baseline_2x"]["seeds"][seed]  # 2 of 5 seeds: held out, and dropclass_2x with it
    results["arms"]["topk"]["seeds"] = {}  # not run yet
    held = hold_out_unfinished_arms(results)
    assert held == {"baseline_2x": [0, 1], "dropclass_2x": [0, 1, 2, 3, 4]}
    assert list(results["arms"]) == ["baseline", "dropclass", "topk"]
    report = write_report(results, str(tmp_path), n_resamples=50).read_text()
    assert "5 seed(s) finished by every arm (0, 1, 2, 3, 4)" in report
    assert f"budget 1x = {results['max_epochs']} epochs (an arm's budget, in the table below, multiplies it)" in report
    assert (
        "`baseline_2x` (2 of 5 seeds finished); `dropclass_2x` (5 of 5 seeds finished). Not run yet: `topk`." in report
    )
    assert "Holm-adjusted over the compared arms shown, fewer than the study names" in report
    assert "| topk |" not in report

    results = fake_results({arm: splits for arm in ("baseline", "dropclass")})
    del results["arms"]["baseline"]["seeds"]["4"], results["arms"]["dropclass"]["seeds"]["3"]
    assert hold_out_unfinished_arms(results) == {} and list(results["arms"]) == ["baseline", "dropclass"]
    report = write_report(results, str(tmp_path), n_resamples=50).read_text()
    assert "3 seed(s) finished by every arm (0, 1, 2)" in report
    assert "Held out" not in report and "Not run yet" not in report and "fewer than the study names" not in report


def test_the_report_names_the_shift_the_study_file_names(tmp_path):
    """``shift:`` words the report ("under the RV-pathology shift"); without it the report says "the context shift"."""
    import numpy as np

    from medseg_dropclass.study.report import write_report
    from tests.study.test_compare import fake_results

    (tmp_path / "s.yaml").write_text(STUDY_TEXT.format(name="s", epochs=2, arms="[baseline]") + "shift: the RV shift\n")
    (tmp_path / "t.yaml").write_text(STUDY_TEXT.format(name="t", epochs=2, arms="[baseline]"))
    assert load_study(str(tmp_path / "s.yaml")).shift == "the RV shift"
    assert load_study(str(tmp_path / "t.yaml")).shift == "the context shift"

    base = np.random.default_rng(0).uniform(0.5, 0.9, (3, 4, 3))
    arms = ("baseline", "dropclass")
    results = fake_results({arm: {"test": base, "test_shifted": base - 0.2} for arm in arms}, seeds=(0, 1, 2))
    assert "under the context shift (drop" in write_report(results, str(tmp_path), n_resamples=20).read_text()
    results["shift"] = "the RV shift"
    report = write_report(results, str(tmp_path), n_resamples=20).read_text()
    assert "under the RV shift (drop" in report and "minus under the RV shift (`test_shifted`)" in report
    assert "context shift" not in report


def test_study_report_rewrites_several_studies_and_names_one_not_run(tmp_path, capsys):
    """``study-report A.yaml B.yaml``: each report rewritten; a study with no committed run named and skipped; one study
    with no run is an error; ``--collect`` takes one study."""
    import json

    import numpy as np

    from medseg_dropclass.study.study_file import study_report_main
    from tests.study.test_compare import NAMES, fake_results

    base = np.random.default_rng(1).uniform(0.5, 0.9, (3, 4, 3))
    results = fake_results(
        {arm: {"test": base, "test_shifted": base - 0.1} for arm in ("baseline", "dropclass")}, (0, 1, 2)
    )
    for arm, entry in results["arms"].items():
        for seed, run in entry["seeds"].items():
            run["summaries"]["test"]["class_share"] = dict(zip(NAMES, results["class_share"]))
            folder = tmp_path / "ran_results" / "results" / arm / f"seed{seed}"
            folder.mkdir(parents=True)
            (folder / "result.json").write_text(json.dumps(run))
    arms = "[baseline, dropclass]"
    for name in ("ran", "waiting"):
        text = (
            STUDY_TEXT.format(name=name, epochs=2, arms=arms)
            .replace("[0, 1]", "[0, 1, 2]")
            .replace("lesion_a", "lesion")
        )
        (tmp_path / f"{name}.yaml").write_text(text + "eval_splits: [test, test_shifted]\n")
    ran, waiting = str(tmp_path / "ran.yaml"), str(tmp_path / "waiting.yaml")

    study_report_main([ran, waiting, "--resamples", "20"])
    printed = capsys.readouterr().out
    assert f"wrote {tmp_path / 'ran_results' / 'report.md'}" in printed
    assert f"{waiting}: no finished run committed yet; no report written" in printed
    assert "rare-class Dice" in (tmp_path / "ran_results" / "report.md").read_text()
    assert not (tmp_path / "waiting_results").exists()

    with pytest.raises(SystemExit):
        study_report_main([waiting, "--resamples", "20"])
    assert "no finished run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        study_report_main([ran, waiting, "--collect", str(tmp_path)])
    assert "--collect and --output-dir take one study (got 2)" in capsys.readouterr().err
