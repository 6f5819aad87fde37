"""Per-class voxel share of a dataset's training split: CSV, markdown and a log-scale bar chart.

python data_scripts/class_stats.py decathlon data/phantom2d_v2 --output-dir outputs/stats/phantom2d
python data_scripts/class_stats.py cityscapes /data/cityscapes --split train --output-dir outputs/stats/cityscapes
python data_scripts/class_stats.py voc /data/VOC2012 --split train --output-dir outputs/stats/voc
"""

import argparse
import sys

from monai.transforms import Compose, LoadImaged

from medseg_dropclass.data import (
    DatasetError,
    class_table,
    count_classes,
    decathlon_class_counts,
    write_class_statistics,
)
from medseg_dropclass.data.decathlon import read_dataset_json
from medseg_dropclass.data.transforms import LookupLabelsd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("decathlon", "cityscapes", "voc"))
    parser.add_argument("root", help="dataset folder (for decathlon: the folder of dataset.json, or the file)")
    parser.add_argument("--split", default=None, help="default: 'training' (decathlon) or 'train'")
    parser.add_argument("--output-dir", required=True)
    args = parser.parse_args()
    try:
        if args.kind == "decathlon":
            info = read_dataset_json(args.root)
            names, title = info.class_names, f"{info.path.parent.name} ({args.split or 'training'})"
            result = decathlon_class_counts(info.path, args.split or "training", progress=True)
        elif args.kind == "cityscapes":
            from medseg_dropclass.data.cityscapes import CITYSCAPES_CLASSES, LABEL_ID_TO_TRAIN_ID, cityscapes_datalist

            datalist = cityscapes_datalist(args.root, args.split or "train")
            names, ignore = CITYSCAPES_CLASSES, 255
            loader = Compose(
                [LoadImaged("label", reader="PILReader", image_only=True), LookupLabelsd("label", LABEL_ID_TO_TRAIN_ID)]
            )
            title = f"Cityscapes ({args.split or 'train'})"
            result = count_classes(datalist, loader, len(names), ignore_index=ignore)
        else:
            from medseg_dropclass.data.voc import VOC_CLASSES, voc_datalist

            datalist = voc_datalist(args.root, args.split or "train")
            names, ignore = VOC_CLASSES, 255
            loader = Compose([LoadImaged("label", reader="PILReader", image_only=True)])
            title = f"Pascal VOC ({args.split or 'train'})"
            result = count_classes(datalist, loader, len(names), ignore_index=ignore)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    rows = class_table(result["counts"], names)
    paths = write_class_statistics(rows, args.output_dir, title)
    print(paths["markdown"].read_text())
    for kind, path in paths.items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
