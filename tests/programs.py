"""Real programs the ``services`` tests run (Debian packages that ``.ci/run`` installs; ``make test`` deselects these
tests): an Orthanc PACS with its DICOMweb plugin on the loopback address, headless Chromium, dciodvfy."""

import contextlib
import json
import pathlib
import shutil
import socket
import subprocess
import time
import urllib.request
from typing import Iterator, List

import pytest

ORTHANC_PLUGIN = pathlib.Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
PACKAGES = "orthanc orthanc-dicomweb chromium dicom3tools"


def require_program(name: str) -> str:
    path = shutil.which(name)
    if path is None:  # a failure, not a skip: these tests exist to run against the real program
        pytest.fail(f"{name} is not installed: apt-get install {PACKAGES} (.ci/run does)")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def orthanc_server(folder: pathlib.Path) -> Iterator[str]:
    """A fresh Orthanc with its own storage under ``folder``, HTTP on a free loopback port, DICOMweb enabled;
    yields the DICOMweb root URL and stops the server afterwards."""
    executable = require_program("Orthanc")
    if not ORTHANC_PLUGIN.is_file():
        pytest.fail(f"{ORTHANC_PLUGIN} is missing: apt-get install orthanc-dicomweb (.ci/run does)")
    port = free_port()
    config = {
        "Name": "medseg-dropclass-test",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,  # loopback only
        "AuthenticationEnabled": False,
        "Plugins": [str(ORTHANC_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = (folder / "orthanc.log").open("w")
    process = subprocess.Popen([executable, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/system", timeout=1).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Orthanc did not start:\n{(folder / 'orthanc.log').read_text()[-2000:]}")
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/dicom-web"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def chromium(*arguments: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Headless Chromium (as root it needs --no-sandbox) with ``arguments``."""
    executable = require_program("chromium")
    command = [executable, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def dciodvfy(path: str) -> List[str]:
    """dciodvfy's complaints about a DICOM file: its lines starting with Error or Warning."""
    done = subprocess.run([require_program("dciodvfy"), str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith(("Error", "Warning"))]
