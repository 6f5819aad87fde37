"""``python -m medseg_dropclass pacs``: segment a series held by a PACS and store the DICOM SEG back, over DICOMweb.

One series: QIDO-RS finds it (``--study``, and ``--series`` where the study holds several the bundle could take),
WADO-RS retrieves its instances, :func:`~medseg_dropclass.apps.predict.predict` segments them with the bundle
(the same checks, notices and SEG as ``predict --format dicom-seg``), STOW-RS stores the SEG in the same study,
referencing the source series and every instance. ``--watch`` polls the PACS and does the same for each new series
once its instance count has stopped changing between two polls. A series that already has a SEG of this model
name and version is skipped unless ``--force``; a series the bundle refuses, an unknown study or an unreachable
server end with an error naming it, and nothing is stored. dicomweb-client speaks DICOMweb (any PACS with a
DICOMweb endpoint: Orthanc's plugin, dcm4chee, Google/Azure health APIs).

    python -m medseg_dropclass pacs --url http://localhost:8042/dicom-web --bundle phantom3d_dropclass --study 1.2.3
    python -m medseg_dropclass pacs --url http://localhost:8042/dicom-web --bundle phantom3d_dropclass --watch
"""

import pathlib
import sys
import tempfile
import time
from typing import Dict, List, Optional

__all__ = ["PacsError", "PacsClient", "segment_series", "watch", "pacs_main"]

STUDY, SERIES, MODALITY, COUNT = "0020000D", "0020000E", "00080060", "00201209"  # DICOM JSON tags (QIDO-RS)


class PacsError(RuntimeError):
    """The PACS could not be reached, holds no such study or series, or the series could not be segmented; nothing
    was stored."""


def _value(entry: Dict[str, dict], tag: str, default=None):
    values = entry.get(tag, {}).get("Value") or []
    return values[0] if values else default


class PacsClient:
    """The DICOMweb calls this command makes, each turning a connection or HTTP failure into a :class:`PacsError`
    naming the server and what was asked."""

    def __init__(self, url: str, timeout: float = 30) -> None:
        from dicomweb_client.api import DICOMwebClient

        self.url = url.rstrip("/")
        self.client = DICOMwebClient(self.url, timeout=timeout)

    def _call(self, what: str, method: str, *args, **kwargs):
        import requests

        try:
            return getattr(self.client, method)(*args, **kwargs)
        except requests.exceptions.ConnectionError as error:
            raise PacsError(f"{self.url}: cannot reach the DICOMweb server ({type(error).__name__})") from None
        except requests.exceptions.HTTPError as error:
            raise PacsError(f"{self.url}: {what} failed: {error}") from None

    def series(self, study_uid: Optional[str] = None) -> List[Dict[str, dict]]:
        """QIDO-RS: the series of ``study_uid`` (every series on the server without one)."""
        fields = [STUDY, SERIES, MODALITY, COUNT]
        if study_uid:
            return self._call(f"searching study {study_uid}", "search_for_series", study_uid, fields=fields)
        return self._call("searching series", "search_for_series", fields=fields, get_remaining=True)

    def metadata(self, study_uid: str, series_uid: str) -> List[Dict[str, dict]]:
        return self._call(f"metadata of series {series_uid}", "retrieve_series_metadata", study_uid, series_uid)

    def retrieve(self, study_uid: str, series_uid: str):
        return self._call(f"retrieving series {series_uid}", "retrieve_series", study_uid, series_uid)

    def store(self, datasets) -> None:
        self._call("storing the SEG", "store_instances", datasets)


def existing_segmentations(
    client: PacsClient, study_uid: str, series_uid: str, model: tuple, entries: Optional[List[Dict[str, dict]]] = None
) -> List[str]:
    """SEG series of ``study_uid`` (its QIDO ``entries`` where already fetched) that reference ``series_uid`` and
    were written by ``model`` = (name, version)."""
    import pydicom

    found = []
    for entry in client.series(study_uid) if entries is None else entries:
        if str(_value(entry, MODALITY, "")).upper() != "SEG":
            continue
        seg_series = str(_value(entry, SERIES))
        for instance in client.metadata(study_uid, seg_series):
            seg = pydicom.Dataset.from_json({k: v for k, v in instance.items() if "BulkDataURI" not in v})  # no pixels
            referenced = [str(r.SeriesInstanceUID) for r in getattr(seg, "ReferencedSeriesSequence", [])]
            algorithms = [
                (str(a.AlgorithmName), str(a.AlgorithmVersion))
                for segment in getattr(seg, "SegmentSequence", [])
                for a in getattr(segment, "SegmentationAlgorithmIdentificationSequence", [])
            ]
            if series_uid in referenced and tuple(map(str, model)) in algorithms:
                found.append(seg_series)
                break
    return found


def _model(bundle: str) -> tuple:
    from medseg_dropclass.engine.bundles import inference_parser

    parser = inference_parser(bundle)
    return str(parser.get("_meta_#name")), str(parser.get("_meta_#version"))


def _pick_series(client: PacsClient, study_uid: str, series_uid: Optional[str]) -> tuple:
    """``(the chosen series' entry, every series entry of the study)``."""
    entries = client.series(study_uid)
    if not entries:
        raise PacsError(f"{client.url}: no study {study_uid}")
    images = [e for e in entries if str(_value(e, MODALITY, "")).upper() not in ("SEG", "SR", "PR", "KO")]
    if series_uid:
        chosen = [e for e in entries if _value(e, SERIES) == series_uid]
        if not chosen:
            raise PacsError(f"{client.url}: study {study_uid} has no series {series_uid}")
        return chosen[0], entries
    if len(images) != 1:
        names = ", ".join(f"{_value(e, SERIES)} ({_value(e, MODALITY)})" for e in images) or "none"
        raise PacsError(
            f"{client.url}: study {study_uid} has {len(images)} image series ({names}); choose one with --series"
        )
    return images[0], entries


def segment_series(
    client: PacsClient,
    bundle: str,
    study_uid: str,
    series_uid: Optional[str] = None,
    ckpt: Optional[str] = None,
    force: bool = False,
    work_dir: Optional[str] = None,
) -> Dict[str, object]:
    """Retrieve one series, segment it with ``bundle`` and store its SEG in the same study.

    Returns ``{"series": uid, "stored": SEG SOP instance UID or None, "skipped": reason or None, "seconds": {...}}``.

    Raises:
        PacsError: server unreachable, no such study or series, a study with several candidate series and no
            ``series_uid``, or a series the bundle refuses (the message names the series and the problem).
    """
    import pydicom

    from medseg_dropclass.apps.predict import predict

    entry, entries = _pick_series(client, study_uid, series_uid)
    series_uid = str(_value(entry, SERIES))
    model = _model(bundle)
    if not force:
        earlier = existing_segmentations(client, study_uid, series_uid, model, entries)
        if earlier:
            reason = f"series {series_uid} already has a SEG of {model[0]} {model[1]} (series {earlier[0]}); --force stores another"
            print(reason, flush=True)
            return {"series": series_uid, "stored": None, "skipped": reason, "seconds": {}}
    seconds: Dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="pacs_") as scratch:
        source = pathlib.Path(scratch) / series_uid
        source.mkdir()
        start = time.perf_counter()
        instances = client.retrieve(study_uid, series_uid)
        for index, dataset in enumerate(instances):
            dataset.save_as(str(source / f"{index:05d}.dcm"), enforce_file_format=True)
        seconds["retrieve"] = time.perf_counter() - start
        start = time.perf_counter()
        refused = f"series {series_uid} of study {study_uid} was not segmented (nothing stored)"
        try:
            result = predict(
                bundle, str(source), str(pathlib.Path(scratch) / "out"), ckpt, output_format="dicom-seg", progress=False
            )
        except ValueError as error:  # the series checks (DatasetError): name the series, not the scratch folder
            raise PacsError(f"{refused}: {str(error).replace(str(source), 'the series')}") from None
        seconds["segment"] = time.perf_counter() - start
        if result["failed"]:
            problem = "; ".join(result["failed"].values())
            raise PacsError(f"{refused}: {problem}")
        seg_file = next(p for p in result["written"] if str(p).endswith(".dcm"))
        seg = pydicom.dcmread(seg_file)
        start = time.perf_counter()
        client.store([seg])
        seconds["store"] = time.perf_counter() - start
    print(
        f"series {series_uid}: {len(instances)} instance(s) segmented by {model[0]} {model[1]}, SEG {seg.SOPInstanceUID} "
        f"stored (retrieve {seconds['retrieve']:.1f} s, segment {seconds['segment']:.1f} s, store {seconds['store']:.1f} s)",
        flush=True,
    )
    return {
        "series": series_uid,
        "stored": str(seg.SOPInstanceUID),
        "skipped": None,
        "seconds": seconds,
        "notices": result["notices"],
    }


def watch(
    client: PacsClient,
    bundle: str,
    ckpt: Optional[str] = None,
    poll_seconds: float = 10.0,
    max_polls: Optional[int] = None,
    work_dir: Optional[str] = None,
) -> Dict[str, Dict[str, object]]:
    """Poll the PACS; segment each image series once its instance count is the same at two polls in a row (it
    has finished arriving). A series that fails is reported and not retried until its instance count changes.
    Returns ``{series UID: result or {"error": message}}`` after ``max_polls`` polls (``None``: forever)."""
    counts: Dict[str, int] = {}
    done: Dict[str, Dict[str, object]] = {}
    polls = 0
    while max_polls is None or polls < max_polls:
        polls += 1
        for entry in client.series():
            uid, modality = str(_value(entry, SERIES)), str(_value(entry, MODALITY, "")).upper()
            count = int(_value(entry, COUNT, 0) or 0)
            if modality in ("SEG", "SR", "PR", "KO") or uid in done and counts.get(uid) == count:
                counts[uid] = count
                continue
            if counts.get(uid) == count and count > 0:  # unchanged since the last poll: complete
                try:
                    done[uid] = segment_series(client, bundle, str(_value(entry, STUDY)), uid, ckpt, work_dir=work_dir)
                except PacsError as error:
                    print(f"error: {error}", file=sys.stderr, flush=True)
                    done[uid] = {"error": str(error)}
            counts[uid] = count
        if max_polls is None or polls < max_polls:
            time.sleep(poll_seconds)
    return done


def pacs_main(argv: Optional[List[str]] = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m medseg_dropclass pacs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the DICOMweb root, e.g. http://localhost:8042/dicom-web")
    parser.add_argument("--bundle", required=True, help="a shipped bundle's name or a bundle folder")
    parser.add_argument("--study", default=None, help="the StudyInstanceUID to segment (one series of it)")
    parser.add_argument("--series", default=None, help="the SeriesInstanceUID, where the study holds several")
    parser.add_argument("--watch", action="store_true", help="poll for new series and segment each once complete")
    parser.add_argument("--poll-seconds", type=float, default=10.0, help="seconds between polls (default: %(default)s)")
    parser.add_argument("--max-polls", type=int, default=None, help="stop watching after this many polls")
    parser.add_argument("--ckpt", default=None, help="the checkpoint (default: the bundle's models/model.pt)")
    parser.add_argument("--force", action="store_true", help="store a SEG even where this model version stored one")
    parser.add_argument(
        "--work-dir", default=None, help="where retrieved series are kept while segmented (a temporary folder)"
    )
    args = parser.parse_args(argv)
    if bool(args.study) == args.watch:
        parser.error("give --study UID (one series) or --watch (every new series), not both or neither")
    if args.series and not args.study:
        parser.error("--series needs --study")
    from medseg_dropclass.engine import CheckpointError

    try:
        client = PacsClient(args.url)
        if args.watch:
            try:
                done = watch(client, args.bundle, args.ckpt, args.poll_seconds, args.max_polls, args.work_dir)
            except KeyboardInterrupt:  # the way to stop watching
                print("stopped watching", flush=True)
                return
            stored = sum(1 for result in done.values() if result.get("stored"))
            print(f"watched {len(done)} series: {stored} SEG(s) stored", flush=True)
        else:
            segment_series(client, args.bundle, args.study, args.series, args.ckpt, args.force, args.work_dir)
    except (PacsError, FileNotFoundError, ValueError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
