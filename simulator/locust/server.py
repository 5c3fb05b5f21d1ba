"""The embedded mock server for a Locust test: a plain child process (`python -m
simulator.server.process SCENARIO`) seeded from the scenario file, listening on an ephemeral loopback
port. It prints its base URL and admin key on one line and stops when its stdin closes, so it never
outlives the Locust process that started it. Started from gevent's side with `subprocess`, which
gevent makes cooperative: no multiprocessing inside a monkey-patched process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

READY_TIMEOUT_S = 900.0  # real seconds allowed for seeding a large scenario


class ChildServerError(RuntimeError):
    """The server process did not start; the message says why."""


class ChildServer:
    def __init__(self, scenario_path: Path, timeout_s: float = READY_TIMEOUT_S) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "simulator.server.process", str(scenario_path)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        line = _readline(self.process, timeout_s)
        try:
            ready = json.loads(line)
            self.base_url, self.admin_key = str(ready["base_url"]), str(ready["admin_key"])
        except (ValueError, KeyError, TypeError):
            self.close()
            raise ChildServerError(f"the server process did not start (exit status {self.process.returncode}); "
                                   "its error is above") from None

    def close(self, timeout_s: float = 10.0) -> None:
        """Close its stdin (it stops), wait for it, and end it if it does not."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait(timeout_s)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _readline(process: subprocess.Popen[bytes], timeout_s: float) -> bytes:
    """The child's first line of output, or b"" when it exits or the time is up."""
    import gevent

    assert process.stdout is not None
    stdout = process.stdout
    try:
        with gevent.Timeout(timeout_s):
            return stdout.readline()
    except gevent.Timeout:
        process.terminate()
        return b""
