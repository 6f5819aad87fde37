import json

from medseg_dropclass.__main__ import main
from medseg_dropclass.data import PHANTOM_CLASSES


def test_demo_end_to_end_on_a_tiny_budget(tmp_path, capsys):
    main(["demo", "--output-dir", str(tmp_path), "--max-epochs", "1"])
    results = json.loads((tmp_path / "results.json").read_text())
    for arm in ("baseline", "dropclass"):
        for split in ("test", "test_shifted"):
            metrics = results["metrics"][arm][split]
            assert {f"dice/{c}" for c in PHANTOM_CLASSES} <= set(metrics)
            assert 0.0 <= metrics["val_mean_dice"] <= 1.0
        assert (tmp_path / arm / "checkpoints" / "model.pt").is_file()
        assert any((tmp_path / arm / "tensorboard").iterdir())
    assert abs(sum(results["class_share"].values()) - 1.0) < 1e-6
    report = (tmp_path / "report.md").read_text()
    assert "| lesion_c |" in report and "lesions outside their usual host organ" in report
    out = capsys.readouterr().out
    assert "tensorboard --logdir" in out and "report:" in out
