"""One writer per output folder: a second process is refused, a dead holder's lock is taken over with a notice."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from medseg_dropclass.engine.run_lock import LOCK_NAME, FolderLockedError, folder_lock, lock_folder, release_folder

REPO = pathlib.Path(__file__).resolve().parents[2]
HOLDER = "import sys, time; from medseg_dropclass.engine.run_lock import lock_folder; lock_folder(sys.argv[1]); print('locked', flush=True); time.sleep(120)"


def _holder(folder: pathlib.Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_process_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path, capsys):
    holder = _holder(tmp_path / "run")
    try:
        with pytest.raises(
            FolderLockedError, match=rf"run: in use by process {holder.pid} \(lock file .*{LOCK_NAME}\)"
        ):
            lock_folder(str(tmp_path / "run"))
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up: the lock file stays with the dead PID in it
        holder.wait()
    assert (tmp_path / "run" / LOCK_NAME).read_text().strip() == str(holder.pid)
    lock_folder(str(tmp_path / "run"))
    assert f"taking over the lock left by process {holder.pid} (no longer running)" in capsys.readouterr().out
    assert (tmp_path / "run" / LOCK_NAME).read_text().strip() == str(os.getpid())
    lock_folder(str(tmp_path / "run"))  # re-entrant in one process
    release_folder(str(tmp_path / "run"))
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_folder_lock_releases_only_what_it_took(tmp_path):
    lock_folder(str(tmp_path))
    with folder_lock(str(tmp_path)):
        pass
    assert (tmp_path / LOCK_NAME).exists()  # held before the block: still held
    release_folder(str(tmp_path))
    with folder_lock(str(tmp_path / "b")):
        assert (tmp_path / "b" / LOCK_NAME).exists()
    assert not (tmp_path / "b" / LOCK_NAME).exists()


def test_a_symlinked_lock_file_is_never_written_through(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / LOCK_NAME).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError, match="is a symbolic link"):
        lock_folder(str(tmp_path / "run"))
    assert not (tmp_path / "elsewhere").exists()


def test_two_trainings_into_one_run_folder(phantom2d, tmp_path):
    """A study restarted while the first was alive trained the same run twice into one checkpoint folder."""
    command = [
        sys.executable,
        "-m",
        "medseg_dropclass",
        "run",
        "phantom2d_dropclass",
        "train",
        "--dataset_dir",
        str(phantom2d),
        "--output_dir",
        str(tmp_path / "run"),
        "--batch_size",
        "2",
    ]
    first = subprocess.Popen(
        command + ["--max_epochs", "500"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO
    )
    try:
        deadline = time.time() + 120
        while not (tmp_path / "run" / LOCK_NAME).is_file() and time.time() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert first.poll() is None, "the first training ended before the second started"
        second = subprocess.run(command + ["--max_epochs", "1"], capture_output=True, text=True, timeout=300, cwd=REPO)
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 1 and f"in use by process {first.pid}" in second.stderr.strip().splitlines()[-1], (
        second.stderr[-2000:]
    )
