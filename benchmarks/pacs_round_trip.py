"""The PACS round trip timed on this machine: a CT-like series of N slices (default 100 slices of 256 x 256, from an
embedded 3D phantom scaled up, stored as int16) is stored in a fresh local Orthanc (Debian's orthanc +
orthanc-dicomweb, loopback only, its own storage), then ``pacs --study`` retrieves it over WADO-RS, segments it with
phantom3d_dropclass and stores the SEG over STOW-RS.

    python benchmarks/pacs_round_trip.py [--slices 100] [--size 256]

Prints the time of each step (upload, retrieve, segment, store) and the whole command's wall time.
"""

import argparse
import pathlib
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    import dataclasses

    import nibabel as nib
    import pydicom
    from dicomweb_client.api import DICOMwebClient
    from scipy.ndimage import zoom

    from medseg_dropclass.apps.pacs import PacsClient, segment_series
    from medseg_dropclass.data.phantoms import DEFAULT_3D, make_phantom_dataset
    from tests.data.test_dicom import write_series
    from tests.programs import orthanc_server

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--size", type=int, default=256, help="rows and columns")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = pathlib.Path(scratch)
        make_phantom_dataset(
            str(root / "phantoms"),
            dataclasses.replace(DEFAULT_3D, num_train=1, num_test=1, num_shifted=0),
            progress=False,
        )
        case = sorted((root / "phantoms" / "imagesTs").iterdir())[0]
        volume = np.asarray(nib.load(str(case)).dataobj, dtype=np.float64).transpose(2, 1, 0)  # (z, y, x)
        factors = (args.slices / volume.shape[0], args.size / volume.shape[1], args.size / volume.shape[2])
        volume = zoom(volume, factors, order=1)
        spacing = tuple(float(s) / f for s, f in zip(nib.load(str(case)).header.get_zooms()[:3], factors[::-1]))
        uid = "1.2.826.0.1.3680043.2.1125.100"
        write_series(root / "series", spacing=spacing, array=np.round(volume * 1000).astype(np.int16), uid=uid)
        with orthanc_server(root / "orthanc") as url:
            start = time.perf_counter()
            DICOMwebClient(url).store_instances([pydicom.dcmread(f) for f in sorted((root / "series").iterdir())])
            upload = time.perf_counter() - start
            start = time.perf_counter()
            result = segment_series(PacsClient(url), "phantom3d_dropclass", uid + ".0", work_dir=scratch)
            total = time.perf_counter() - start
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in result["seconds"].items())
    print(
        f"{args.slices} slices of {args.size} x {args.size}: upload {upload:.1f} s; pacs --study {total:.1f} s ({steps})"
    )


if __name__ == "__main__":
    main()
