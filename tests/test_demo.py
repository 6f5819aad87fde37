import json

from medseg_dropclass.__main__ import main


def test_demo_end_to_end_on_a_tiny_budget(tmp_path, capsys):
    main(["demo", "--output-dir", str(tmp_path), "--iterations", "2"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) >= {"baseline", "dropclass", "class_share"}
    for arm in ("baseline", "dropclass"):
        for split in ("test", "test_shifted"):
            assert set(results[arm][split]) == {
                "background", "organ_large", "organ_medium", "organ_small", "lesion_a", "lesion_b", "lesion_c"
            }
    assert abs(sum(results["class_share"].values()) - 1.0) < 1e-6
    report = (tmp_path / "report.md").read_text()
    assert "| lesion_c |" in report and "context-shifted" in report
    assert "report:" in capsys.readouterr().out
    assert (tmp_path / "phantom2d" / "dataset.json").is_file()
