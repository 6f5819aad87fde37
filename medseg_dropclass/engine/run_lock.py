"""One writer per output folder: training, evaluation, ``predict`` and ``compare`` lock the folder they write.

The lock is ``<folder>/.lock``, holding the writer's PID, with an exclusive ``flock`` on it: the kernel
releases it when the process ends however it ends, so a lock file left by a killed process is stale and is
taken over with a notice. A second process that asks for a held folder gets :class:`FolderLockedError` naming
the folder and the PID. Locks are per process and re-entrant (the same process may open the same folder again,
e.g. ``compare`` evaluating a run it trained). ``fcntl`` is POSIX: elsewhere the lock is a no-op.
"""

import atexit
import contextlib
import os
from typing import Dict, Iterable, Iterator, Optional

__all__ = ["LOCK_NAME", "FolderLockedError", "lock_folder", "release_folder", "held_folders", "folder_lock"]

LOCK_NAME = ".lock"
_HELD: Dict[str, int] = {}  # real path of the folder -> file descriptor of its lock file


class FolderLockedError(RuntimeError):
    """Another live process writes to this folder; the message names the folder and the process."""


def _read_pid(fd: int) -> Optional[int]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_folder(folder: str, checked: object = None, what: str = "output folder") -> str:
    """Take the lock of ``folder`` (created if missing) for this process, until :func:`release_folder` or exit.

    Under ``torchrun`` only rank 0 locks (the other ranks write nothing of their own there). ``checked``: anything a
    config must compute first (e.g. the planned output names, whose checks name a bad output folder better).

    Returns:
        ``folder``, so that a config can use ``$lock_folder(@output_dir)`` as a value.

    Raises:
        FolderLockedError: another live process holds the folder.
        FileExistsError: ``<folder>/.lock`` is a symbolic link (never written through).
    """
    if int(os.environ.get("RANK", "0") or 0) != 0:
        return folder
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return folder
    from medseg_dropclass.validation import check_writable_folder

    check_writable_folder(folder)
    real = os.path.realpath(folder)
    if real in _HELD:
        return folder
    path = os.path.join(real, LOCK_NAME)
    for _ in range(5):  # the file may be removed by its previous holder between open and flock: open it again
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as error:
            if os.path.islink(path):
                raise FileExistsError(f"{path}: is a symbolic link; refusing to write through it") from error
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise FolderLockedError(
                f"{folder}: in use by process {pid if pid is not None else '(unknown)'} (lock file {path}); wait for it to "
                "finish or stop it, or choose another output folder"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:
        raise FolderLockedError(f"{folder}: its lock file {path} keeps changing; another process is starting there")
    previous = _read_pid(fd)
    if previous is not None and previous != os.getpid():
        state = "no longer running" if not _alive(previous) else "its lock was released"
        print(f"notice: {folder}: taking over the lock left by process {previous} ({state})", flush=True)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[real] = fd
    return folder


def release_folder(folder: str) -> None:
    """Release this process's lock of ``folder`` and remove the lock file (nothing happens if it holds none)."""
    real = os.path.realpath(folder)
    fd = _HELD.pop(real, None)
    if fd is None:
        return
    try:
        os.unlink(os.path.join(real, LOCK_NAME))
    except OSError:
        pass
    os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: str, what: str = "output folder") -> Iterator[str]:
    """:func:`lock_folder` for a ``with`` block; released at its end unless this process held it before."""
    held = os.path.realpath(folder) in _HELD
    lock_folder(folder, what=what)
    try:
        yield folder
    finally:
        if not held:
            release_folder(folder)


def held_folders() -> Iterable[str]:
    """The folders this process holds (real paths)."""
    return list(_HELD)


@atexit.register
def _release_all() -> None:
    for real in list(_HELD):
        release_folder(real)
