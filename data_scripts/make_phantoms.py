"""Write the embedded phantom datasets (Decathlon layout) -- a thin CLI over medseg_dropclass.data.phantoms.

python data_scripts/make_phantoms.py --output-dir data/phantom2d_v2 --spatial-dims 2
python data_scripts/make_phantoms.py --output-dir data/phantom3d_v2 --spatial-dims 3
"""

import argparse
import dataclasses
import time

from medseg_dropclass.data.phantoms import DEFAULT_2D, DEFAULT_3D, make_phantom_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--spatial-dims", type=int, choices=(2, 3), default=2)
    parser.add_argument("--size", type=int, help="voxels per axis (default: 96 in 2D, 64 in 3D)")
    parser.add_argument("--num-train", type=int)
    parser.add_argument("--num-test", type=int)
    parser.add_argument("--num-shifted", type=int)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = DEFAULT_2D if args.spatial_dims == 2 else DEFAULT_3D
    overrides = {"seed": args.seed}
    for name in ("size", "num_train", "num_test", "num_shifted"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    config = dataclasses.replace(config, **overrides)
    start = time.perf_counter()
    path = make_phantom_dataset(args.output_dir, config)
    print(f"wrote {path} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
