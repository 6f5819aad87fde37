import json

from medseg_dropclass.apps.cli import main
from medseg_dropclass.data import PHANTOM_CLASSES


def test_demo_is_compare_with_two_arms_and_one_seed(phantom2d, tmp_path, capsys):
    main(["demo", "--output-dir", str(tmp_path), "--max-epochs", "1", "--no-figures", "--dataset-dir", str(phantom2d)])
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["arms"]) == ["baseline", "dropclass"] and results["seeds"] == [0]
    assert results["splits"] == ["test", "test_shifted"]
    for arm in results["arms"]:
        for split in results["splits"]:
            summary = results["arms"][arm]["seeds"]["0"]["summaries"][split]
            assert set(summary["mean"]) == set(PHANTOM_CLASSES)
            assert 0.0 <= summary["foreground_mean"]["Dice"] <= 1.0
            # the summary is the one the bundle's evaluate config wrote
            assert json.loads((tmp_path / arm / "seed0" / f"eval_{split}" / "summary.json").read_text())[
                "mean"
            ] == json.loads(json.dumps(summary["mean"]))
        assert any((tmp_path / arm / "seed0" / "run" / "tensorboard").iterdir())
    assert abs(sum(results["class_share"]) - 1.0) < 1e-6
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# Demo") and "One seed: no interval can be given" in report
    rare = [name for name, share in zip(results["class_names"], results["class_share"]) if share < 0.01]
    assert rare and f"**Rare classes** ({', '.join(rare)};" in report  # the classes under 1% of the training labels
    assert all(f"| {name} |" in report for name in PHANTOM_CLASSES) and "split `test_shifted`" in report
    out = capsys.readouterr().out
    assert "tensorboard --logdir" in out and "report:" in out
    assert out.count("thread(s), beside other runs)") == 2  # both arms trained side by side (--jobs 2)
