"""Memory and time of ``predict`` on a CT-sized volume (512x512x200) with the phantom3d bundle, whole-volume
scores (MONAI's sliding window, then softmax, inverse and argmax: the path of smaller cases) against the slab-by-slab
class map (``--stream-above``), each in its own process, side by side.

    python benchmarks/large_volume.py [--size 512 512 200]

Prints each path's peak resident memory beyond a run on a tiny volume (imports, model and the rest of the process),
as a multiple of the input volume in float32, its wall time, and whether the two label maps agree.
"""

import argparse
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medseg_dropclass.study.compare import _high_water_mark_kib  # noqa: E402


def predict_process(source: pathlib.Path, output: pathlib.Path, stream_above: int) -> dict:
    """``predict`` in a child process; its peak resident memory (MiB) and wall time (s)."""
    command = [
        sys.executable,
        "-m",
        "medseg_dropclass",
        "predict",
        "--bundle",
        "phantom3d_dropclass",
        "--input",
        str(source),
        "--output-dir",
        str(output),
        "--stream-above",
        str(stream_above),
    ]
    start = time.perf_counter()
    log_file = output.parent / f"{output.name}.log"
    with log_file.open(
        "w"
    ) as log_stream:  # a file, not a pipe: the progress bars would fill a pipe and block the child
        process = subprocess.Popen(command, cwd=REPO, stdout=log_stream, stderr=subprocess.STDOUT)
        peak = 0
        while process.poll() is None:
            peak = max(peak, _high_water_mark_kib(process.pid))
            time.sleep(0.05)
    log = log_file.read_text()
    if process.returncode != 0:
        raise RuntimeError(f"predict failed (exit {process.returncode}):\n{log[-3000:]}")
    return {"peak_mib": peak / 1024, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, nargs=3, default=[512, 512, 200])
    parser.add_argument(
        "--skip-whole", action="store_true", help="measure the slab path only (the whole-volume path takes GBs)"
    )
    args = parser.parse_args()

    import nibabel as nib

    work = pathlib.Path(tempfile.mkdtemp(prefix="large_volume_"))
    affine = np.diag([1.0, 1.0, 2.5, 1.0])  # the bundle's spacing, RAS: the preprocessing does not resample
    rng = np.random.default_rng(0)
    for name, size in (("tiny", (48, 48, 16)), ("large", tuple(args.size))):
        (work / name).mkdir()
        volume = (rng.normal(40, 30, size)).astype(np.int16)
        nib.save(nib.Nifti1Image(volume, affine), str(work / name / "ct.nii.gz"))
    input_mib = np.prod(args.size) * 4 / 2**20
    tiny = predict_process(work / "tiny", work / "out_tiny", 0)
    print(
        f"input {tuple(args.size)}: {input_mib:.0f} MiB as float32; process on a tiny volume: {tiny['peak_mib']:.0f} MiB peak"
    )
    rows = {"slab": predict_process(work / "large", work / "out_slab", 0)}
    if not args.skip_whole:
        rows["whole"] = predict_process(work / "large", work / "out_whole", 2**62)
    for name, row in rows.items():
        beyond = row["peak_mib"] - tiny["peak_mib"]
        print(
            f"  {name:<6} peak {row['peak_mib']:7.0f} MiB, {beyond:7.0f} MiB beyond the tiny run = {beyond / input_mib:5.2f}x the input; "
            f"{row['seconds']:6.1f} s"
        )
    if "whole" in rows:
        slab = np.asarray(nib.load(str(work / "out_slab" / "ct_seg.nii.gz")).dataobj)
        whole = np.asarray(nib.load(str(work / "out_whole" / "ct_seg.nii.gz")).dataobj)
        print(
            f"  label maps equal: {bool(np.array_equal(slab, whole))} ({int((slab != whole).sum())} voxels differ); "
            f"memory ratio slab/whole beyond the tiny run "
            f"{(rows['slab']['peak_mib'] - tiny['peak_mib']) / (rows['whole']['peak_mib'] - tiny['peak_mib']):.2f}"
        )


if __name__ == "__main__":
    main()
