"""``python -m medseg_dropclass ARGS`` in the test process: the same stdout, stderr and exit code a child process gives,
without paying the torch and MONAI imports (about 6 CPU-seconds) per command. Tests about process boundaries (a
kill, an abort, two processes and one lock) start real processes instead."""

import contextlib
import io
import os
import subprocess
import traceback
from typing import Union


def run_cli(*args: str, cwd: Union[str, os.PathLike]) -> subprocess.CompletedProcess:
    from medseg_dropclass.apps.cli import main

    out, err, code = io.StringIO(), io.StringIO(), 0
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in args])
            except SystemExit as stop:  # what the interpreter would make of it: a message is printed, exit 1
                if isinstance(stop.code, int) or stop.code is None:
                    code = stop.code or 0
                else:
                    print(stop.code, file=err)
                    code = 1
            except Exception:  # an uncaught error: the traceback, exit 1
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(["medseg_dropclass", *map(str, args)], code, out.getvalue(), err.getvalue())


def run_script(
    script: Union[str, os.PathLike], *args: str, cwd: Union[str, os.PathLike] = "."
) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGS`` (a data_scripts/ command line) in the test process, as :func:`run_cli`."""
    import runpy
    import sys

    out, err, code = io.StringIO(), io.StringIO(), 0
    previous, argv = os.getcwd(), sys.argv
    os.chdir(cwd)
    sys.argv = [str(script), *map(str, args)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(str(script), run_name="__main__")
            except SystemExit as stop:
                if isinstance(stop.code, int) or stop.code is None:
                    code = stop.code or 0
                else:
                    print(stop.code, file=err)
                    code = 1
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(previous)
        sys.argv = argv
    return subprocess.CompletedProcess([str(script), *map(str, args)], code, out.getvalue(), err.getvalue())
