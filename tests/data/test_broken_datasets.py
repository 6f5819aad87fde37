"""Broken datasets end training with exit 1 and the file and problem last, never an abort (exit 134) after the
message. The whole corpus, 2D and 3D, repeated: ``benchmarks/broken_datasets.py``."""

import threading

import pytest
import torch
from monai.transforms import Transform

from medseg_dropclass.data.transforms import CacheDataset, DatasetError, NamedErrorsCompose

from tests.data.broken_datasets import PROBLEMS, break_dataset, judge, last_error, train_on


@pytest.mark.parametrize("problem, spatial_dims", [
    ("nan_image", 3), ("label_out_of_range", 3), ("not_an_image", 3), ("shape_mismatch", 3),  # aborted with 134 on main
    ("no_tensor_image_size", 2), ("external_path", 2), ("invalid_json", 2),
])
def test_a_broken_dataset_ends_with_exit_1_and_names_the_file(problem, spatial_dims, phantom2d, phantom3d, tmp_path):
    source = phantom2d if spatial_dims == 2 else phantom3d
    named = break_dataset(source, tmp_path / "data", problem)
    done = train_on(tmp_path / "data", tmp_path / "out", spatial_dims)
    assert judge(done, named, PROBLEMS[problem], spatial_dims) == "", done.stderr[-3000:]
    assert "terminate called" not in done.stderr


def test_no_tensor_image_size_says_what_to_pass(phantom2d, tmp_path):
    named = break_dataset(phantom2d, tmp_path / "data", "no_tensor_image_size")
    done = train_on(tmp_path / "data", tmp_path / "out", 2)
    assert "pass --spatial_dims 2 (or 3)" in last_error(done.stderr) and str(named) in last_error(done.stderr)


def test_external_paths_train_when_allowed(phantom2d, tmp_path):
    from medseg_dropclass.data import decathlon_datalist

    break_dataset(phantom2d, tmp_path / "data", "external_path")
    with pytest.raises(DatasetError, match=r"(?s)lists 1 file\(s\) outside the dataset folder .*data_outside.nii.gz \(image\)"):
        decathlon_datalist(tmp_path / "data" / "dataset.json")
    items = decathlon_datalist(tmp_path / "data" / "dataset.json", allow_external=True)
    assert items[0]["image"] == str(tmp_path / "data_outside.nii.gz")


class _Fails(Transform):
    """A transform that fails on one item and is slow on the others (a reader still busy when the error comes)."""

    def __call__(self, item):
        import time

        if item["i"] == 1:
            raise DatasetError(f"case {item['i']}: broken")
        time.sleep(0.05)
        return {"x": torch.zeros(1)}


@pytest.mark.parametrize("workers", [0, 1, 4])
def test_the_training_cache_stops_cleanly_when_a_case_fails(workers):
    """MONAI fills the cache in a thread pool, even with one worker, and left a thread inside the reader when the
    error reached the main thread: the process then aborted at exit (134). Every worker is done now."""
    before = threading.active_count()
    with pytest.raises(DatasetError, match="case 1: broken"):
        CacheDataset([{"i": i} for i in range(8)], NamedErrorsCompose([_Fails()]), cache_rate=1.0, num_workers=workers, progress=False)
    assert threading.active_count() == before
