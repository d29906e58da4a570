"""Stopping the servers the backend tests start as subprocesses."""

from __future__ import annotations

import subprocess


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    """Terminate ``procs`` together; kill any that has not exited 10 s later."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
