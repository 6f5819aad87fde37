"""ACDC cine-MRI (Bernard et al., IEEE TMI 2018) into the project's Decathlon layout.

Two sources are read:

- the **official layout** a user downloads: ``training/patientNNN/patientNNN_frameMM.nii.gz`` with
  ``..._gt.nii.gz`` and ``Info.cfg`` (``ED:``, ``ES:``, ``Group:``); geometry and spacing are kept;
- the **h5 copy** of ``antares0811/3DCardiac`` (``data/ACDC``): ``data/patientNNN_frameMM_slice_S.h5``
  (training slices) and ``data/patientNNN_frameMM.h5`` (volumes), datasets ``image`` (float) and
  ``label`` (uint8). It stores no spacing: the volumes are written with a 1 mm identity affine and
  ``dataset.json`` says so (Dice and IoU do not need spacing). Its two frames are ``frame01`` (end-diastole,
  frame 1 of every ACDC patient) and ``frame02`` (end-systole).

Every case is one (patient, phase) volume ``acdc_patientNNN_{ED,ES}.nii.gz`` of shape ``(H, W, slices)``:
a 2D network trains on its slices and is scored per volume (per patient and phase, as ACDC is).
``dataset.json`` holds two patient-level splits: ``common`` (the 70/10/20 patients of the h5 copy's
lists, for either source) and ``shift`` (train and validate on DCM, HCM, MINF and NOR patients, test on
the 20 patients of the abnormal-right-ventricle group RV).
"""

import dataclasses
import json
import pathlib
import re
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from medseg_dropclass.data.transforms import DatasetError

__all__ = [
    "ACDC_LABELS", "GROUPS", "COMMON_SPLIT", "AcdcCase", "group_from_number", "read_info_cfg", "official_cases", "h5_cases",
    "acdc_splits", "write_acdc_decathlon",
]

ACDC_LABELS = {"0": "background", "1": "right_ventricle", "2": "myocardium", "3": "left_ventricle"}
GROUPS = ("DCM", "HCM", "MINF", "NOR", "RV")
# the patient-level 70/10/20 split of the h5 copy's train.list / val.list / test.list (used for both sources)
COMMON_SPLIT: Dict[str, Tuple[int, ...]] = {
    "validation": (2, 19, 28, 30, 39, 45, 78, 82, 85, 87),
    "test": (1, 7, 8, 11, 13, 22, 24, 33, 52, 59, 64, 65, 66, 68, 75, 80, 81, 83, 84, 93),
}
COMMON_SPLIT["training"] = tuple(n for n in range(1, 101) if n not in COMMON_SPLIT["validation"] + COMMON_SPLIT["test"])
SHIFT_GROUP = "RV"
REPLICATION_GROUP = "DCM"  # the second shift split (studies/acdc_shift_dcm_replication.yaml)
H5_PHASES = {1: "ED", 2: "ES"}


@dataclasses.dataclass
class AcdcCase:
    """One patient's volume at one phase: ``image`` float32 and ``label`` uint8, both ``(H, W, slices)``."""

    patient: int
    phase: str
    image: np.ndarray
    label: np.ndarray
    affine: np.ndarray
    group: str
    group_source: str
    source: str

    @property
    def name(self) -> str:
        return f"acdc_patient{self.patient:03d}_{self.phase}"


def group_from_number(patient: int) -> str:
    """The pathology group of a training patient (001-100) from the official numbering: 20 per group, in the
    order DCM, HCM, MINF, NOR, RV."""
    if not 1 <= patient <= 100:
        raise DatasetError(f"patient {patient:03d}: the group follows from the number for training patients 001-100 only; give its Info.cfg")
    return GROUPS[(patient - 1) // 20]


def read_info_cfg(path: pathlib.Path) -> Dict[str, str]:
    """``Info.cfg`` as ``{key: value}`` (``ED``, ``ES``, ``Group``, ...)."""
    entries = {}
    for line in pathlib.Path(path).read_text().splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            entries[key.strip()] = value.strip()
    for key in ("ED", "ES"):
        if key not in entries:
            raise DatasetError(f"{path}: no '{key}:' line (the frame number of the {key} phase)")
    return entries


def _check_pair(image: np.ndarray, label: np.ndarray, source: str) -> None:
    if image.shape != label.shape:
        raise DatasetError(f"{source}: image shape {image.shape} differs from label shape {label.shape}")
    if not np.isfinite(image).all():
        raise DatasetError(f"{source}: image holds {int((~np.isfinite(image)).sum())} non-finite value(s)")
    values = np.unique(label)
    if values.min() < 0 or values.max() > 3 or not np.array_equal(values, np.round(values)):
        raise DatasetError(f"{source}: label values {values.tolist()} are not ACDC classes 0..3")


def official_cases(root: pathlib.Path) -> Iterator[AcdcCase]:
    """The ED and ES volumes of every ``patientNNN`` folder under ``root`` (or ``root/training``,
    ``root/testing``) that has ground truth; the group from ``Info.cfg`` (the numbering where it lacks one)."""
    import nibabel as nib

    root = pathlib.Path(root)
    folders = sorted(p for base in (root, root / "training", root / "testing") if base.is_dir() for p in base.glob("patient[0-9][0-9][0-9]"))
    if not folders:
        raise DatasetError(f"{root}: no patientNNN folders (expected the official ACDC layout, training/patientNNN/)")
    for folder in folders:
        patient = int(folder.name[len("patient"):])
        info_path = folder / "Info.cfg"
        if not info_path.is_file():
            raise DatasetError(f"{info_path}: missing (it gives the ED and ES frames)")
        info = read_info_cfg(info_path)
        group, source = (info["Group"], "Info.cfg") if "Group" in info else (group_from_number(patient), "numbering")
        for phase in ("ED", "ES"):
            stem = f"{folder.name}_frame{int(info[phase]):02d}"
            image_path, label_path = folder / f"{stem}.nii.gz", folder / f"{stem}_gt.nii.gz"
            if not label_path.is_file():
                continue  # the official test set before its labels were released
            try:
                image_file, label_file = nib.load(str(image_path)), nib.load(str(label_path))
                image = np.asarray(image_file.dataobj, dtype=np.float32)
                label = np.asarray(label_file.dataobj)
            except Exception as error:  # noqa: BLE001  (name the file, whatever nibabel raised)
                raise DatasetError(f"{folder}/{stem}: cannot be read ({type(error).__name__}: {error})") from error
            _check_pair(image, label, str(label_path))
            yield AcdcCase(patient, phase, image, label.astype(np.uint8), image_file.affine, group, source, str(image_path))


def _read_h5(path: pathlib.Path) -> Tuple[np.ndarray, np.ndarray]:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            missing = [key for key in ("image", "label") if key not in handle]
            if missing:
                raise DatasetError(f"{path}: no dataset {missing} (an ACDC h5 file holds 'image' and 'label')")
            return np.asarray(handle["image"], dtype=np.float32), np.asarray(handle["label"])
    except DatasetError:
        raise
    except Exception as error:  # noqa: BLE001  (a truncated or foreign file: name it)
        raise DatasetError(f"{path}: cannot be read as HDF5 ({type(error).__name__}: {error})") from error


H5_NAME = re.compile(r"patient(\d{3})_frame(\d{2})(?:_slice_(\d+))?\.h5$")


def h5_cases(root: pathlib.Path) -> Iterator[AcdcCase]:
    """The volumes of the h5 copy (``root`` holds ``data/``): volume files as they are, slice files stacked
    back by slice number (1..N, every one present). Groups from the official numbering."""
    folder = pathlib.Path(root) / "data"
    if not folder.is_dir():
        folder = pathlib.Path(root)
    volumes: Dict[Tuple[int, int], pathlib.Path] = {}
    slices: Dict[Tuple[int, int], Dict[int, pathlib.Path]] = {}
    for path in sorted(folder.glob("patient*.h5")):
        match = H5_NAME.match(path.name)
        if match is None:
            raise DatasetError(f"{path}: not an ACDC h5 name (patientNNN_frameMM.h5 or patientNNN_frameMM_slice_S.h5)")
        key = (int(match.group(1)), int(match.group(2)))
        if match.group(3) is None:
            volumes[key] = path
        else:
            slices.setdefault(key, {})[int(match.group(3))] = path
    if not volumes and not slices:
        raise DatasetError(f"{folder}: no patientNNN_frameMM*.h5 files (expected the h5 copy's data/ folder)")
    for key in sorted(set(volumes) | set(slices)):
        patient, frame = key
        if frame not in H5_PHASES:
            raise DatasetError(f"{folder}/patient{patient:03d}_frame{frame:02d}: frame {frame}; the h5 copy has frames 01 (ED) and 02 (ES)")
        if key in volumes:
            image, label = _read_h5(volumes[key])  # (slices, H, W)
            source = str(volumes[key])
            _check_pair(image, label, source)
            image, label = np.moveaxis(image, 0, -1), np.moveaxis(label, 0, -1)
        else:
            numbers = sorted(slices[key])
            if numbers != list(range(1, len(numbers) + 1)):
                gaps = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
                raise DatasetError(f"{folder}/patient{patient:03d}_frame{frame:02d}: slice(s) {gaps} missing; cannot stack the volume")
            pairs = [_read_h5(slices[key][n]) for n in numbers]
            for n, (image, label) in zip(numbers, pairs):
                _check_pair(image, label, str(slices[key][n]))
                if image.shape != pairs[0][0].shape:
                    raise DatasetError(f"{slices[key][n]}: slice shape {image.shape} differs from slice 1's {pairs[0][0].shape}")
            image, label = np.stack([p[0] for p in pairs], -1), np.stack([p[1] for p in pairs], -1)
            source = f"{folder}/patient{patient:03d}_frame{frame:02d}_slice_*.h5"
        yield AcdcCase(patient, H5_PHASES[frame], image, label.astype(np.uint8), np.eye(4), group_from_number(patient), "numbering", source)


def acdc_splits(patients: Dict[int, str]) -> Dict[str, List[int]]:
    """Patient numbers of each split: ``{training,validation,test}_{common,shift}`` and ``test_no_rv`` from
    ``{patient: group}``, and the replication's ``{training,validation,test}_shift_dcm`` and ``test_no_dcm``.

    ``shift``: the common training and validation patients outside the RV group; its test set is every RV
    patient, and ``test_no_rv`` (the common test patients outside RV) is its in-distribution test set.
    ``shift_dcm``: the same with the DCM group (dilated left ventricle) held out.
    """
    splits = {f"{name}_common": [p for p in COMMON_SPLIT[name] if p in patients] for name in ("training", "validation", "test")}
    for name in ("training", "validation"):
        splits[f"{name}_shift"] = [p for p in COMMON_SPLIT[name] if p in patients and patients[p] != SHIFT_GROUP]
    splits["test_shift"] = sorted(p for p, group in patients.items() if group == SHIFT_GROUP)
    splits["test_no_rv"] = [p for p in splits["test_common"] if patients[p] != SHIFT_GROUP]  # in distribution for "shift"
    # the replication: the same design with the dilated-LV group (DCM) held out, so the LV is the shifted structure
    for name in ("training", "validation"):
        splits[f"{name}_shift_dcm"] = [p for p in COMMON_SPLIT[name] if p in patients and patients[p] != REPLICATION_GROUP]
    splits["test_shift_dcm"] = sorted(p for p, group in patients.items() if group == REPLICATION_GROUP)
    splits["test_no_dcm"] = [p for p in splits["test_common"] if patients[p] != REPLICATION_GROUP]
    return splits


def write_acdc_decathlon(
    cases: Iterator[AcdcCase], output_dir: pathlib.Path, source: str, overwrite: bool = False, progress: Optional[Callable] = None
) -> pathlib.Path:
    """Write the volumes (``imagesTr/``, ``labelsTr/``) and ``dataset.json`` with both splits; returns its path.

    Raises:
        FileExistsError: ``output_dir`` holds a ``dataset.json`` and ``overwrite`` is false.
    """
    import nibabel as nib

    output_dir = pathlib.Path(output_dir)
    if (output_dir / "dataset.json").exists() and not overwrite:
        raise FileExistsError(f"{output_dir / 'dataset.json'} exists; pass --overwrite to replace the converted dataset")
    (output_dir / "imagesTr").mkdir(parents=True, exist_ok=True)
    (output_dir / "labelsTr").mkdir(parents=True, exist_ok=True)
    entries: Dict[int, List[dict]] = {}
    groups: Dict[int, str] = {}
    group_sources = set()
    for case in progress(cases) if progress else cases:
        nib.save(nib.Nifti1Image(case.image, case.affine), str(output_dir / "imagesTr" / f"{case.name}.nii.gz"))
        nib.save(nib.Nifti1Image(case.label, case.affine), str(output_dir / "labelsTr" / f"{case.name}.nii.gz"))
        entries.setdefault(case.patient, []).append({
            "image": f"./imagesTr/{case.name}.nii.gz", "label": f"./labelsTr/{case.name}.nii.gz",
            "patient": f"patient{case.patient:03d}", "phase": case.phase, "group": case.group,
        })
        groups[case.patient] = case.group
        group_sources.add(case.group_source)
    if not entries:
        raise DatasetError(f"{source}: no labelled ACDC case found")
    splits = acdc_splits(groups)
    content: dict = {
        "name": "ACDC",
        "description": "Automated Cardiac Diagnosis Challenge cine MRI, end-diastole and end-systole volumes (Bernard et al., IEEE TMI 2018)",
        "reference": "https://www.creatis.insa-lyon.fr/Challenge/acdc/ (research use; cite the paper)",
        "source": source,
        "spacing": "kept from the NIfTI files" if "official" in source else "unknown: the h5 copy stores none; 1 mm written (Dice and IoU do not need it)",
        "group_source": " and ".join(sorted(group_sources)),
        "tensorImageSize": "3D",
        "modality": {"0": "cine-MRI"},
        "labels": ACDC_LABELS,
        "numTraining": sum(len(v) for v in entries.values()),
        "splits": {"common": "the 70/10/20 patients of the h5 copy's lists", "shift": f"train/validate without group {SHIFT_GROUP}, test on {SHIFT_GROUP} (test_shift) and in distribution on test_no_rv",
                   "shift_dcm": f"train/validate without group {REPLICATION_GROUP}, test on {REPLICATION_GROUP} (test_shift_dcm) and in distribution on test_no_dcm"},
    }
    for name, patients in splits.items():
        content[name] = [entry for p in patients for entry in sorted(entries[p], key=lambda e: e["phase"])]
    content["training"] = content["training_common"]
    (output_dir / "dataset.json").write_text(json.dumps(content, indent=1))
    return output_dir / "dataset.json"


def patients_of(datalist: Sequence[dict]) -> List[str]:
    return sorted({entry["patient"] for entry in datalist})
