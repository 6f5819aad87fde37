import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from medseg_dropclass.evaluation.figures import save_figure  # noqa: E402


@pytest.mark.parametrize("bbox_tight", [False, True])
def test_save_figure_writes_png_into_new_folder_and_closes(tmp_path, bbox_tight):
    figure, axes = plt.subplots(1, 2)
    shown = axes[0].imshow([[0.0, 1.0], [1.0, 0.0]])
    figure.colorbar(shown, ax=list(axes))
    path = save_figure(figure, tmp_path / "a" / "b" / "panel.png", dpi=50, bbox_tight=bbox_tight)
    assert path == tmp_path / "a" / "b" / "panel.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figure.number not in plt.get_fignums()


def test_save_figure_dpi_sets_pixel_size(tmp_path):
    figure = plt.figure(figsize=(2, 1))
    path = save_figure(figure, tmp_path / "f.png", dpi=40)
    assert plt.imread(path).shape[:2] == (40, 80)
