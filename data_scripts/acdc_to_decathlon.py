"""Convert ACDC (the official download or the h5 copy of antares0811/3DCardiac) into the Decathlon layout the
bundles read -- a thin CLI over medseg_dropclass.data.acdc.

    python data_scripts/acdc_to_decathlon.py --source official --input /data/ACDC/database --output-dir data/acdc
    python data_scripts/acdc_to_decathlon.py --source h5 --input /path/to/3DCardiac/data/ACDC --output-dir data/acdc

The h5 copy from a bare git directory (what the project's `fetch` tool returns) can be unpacked first:
    mkdir -p /tmp/acdc && git -C REPO.git archive HEAD data/ACDC | tar -x -C /tmp/acdc
Writes one volume per patient and phase (ED, ES) and dataset.json with the `common` (70/10/20 patients),
`shift` (test on the RV group) and `shift_dcm` (test on the DCM group) splits. ACDC's terms apply to the output: research use, cite the paper.
"""

import argparse
import pathlib
import sys
import time

from tqdm import tqdm

from medseg_dropclass.data.acdc import h5_cases, official_cases, write_acdc_decathlon
from medseg_dropclass.data.transforms import DatasetError


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("official", "h5"), required=True)
    parser.add_argument(
        "--input", required=True, help="the official folder (with training/) or the h5 copy's data/ACDC folder"
    )
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier conversion in --output-dir")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    reader = official_cases if args.source == "official" else h5_cases
    description = f"{args.source} ({'official ACDC layout' if args.source == 'official' else 'h5 copy, antares0811/3DCardiac'}): {args.input}"
    try:
        path = write_acdc_decathlon(
            reader(pathlib.Path(args.input)),
            pathlib.Path(args.output_dir),
            description,
            args.overwrite,
            progress=lambda cases: tqdm(cases, desc="convert", unit="volume"),
        )
    except (DatasetError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    import json

    content = json.loads(path.read_text())
    print(f"wrote {path} in {time.perf_counter() - start:.0f} s; groups from {content['group_source']}")
    for split, items in content.items():  # every split the converter wrote (common, shift, shift_dcm, ...)
        if isinstance(items, list) and split != "training":
            print(f"  {split:<20} {len(items):4d} volumes")


if __name__ == "__main__":
    main()
