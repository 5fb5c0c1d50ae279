"""Plumbing the benchmarks and the tests share: processes in their own group (``dagster dev``
among them), ports, waits, and the Dagster UI's backfill GraphQL.

A benchmark never imports the test suite (the suite's ``test_layers.py`` checks it): what
both need lives here, and the tests import it as ``bench.support``. The bench scripts
run as ``python bench/<name>.py`` and import it as ``support``.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path


def _default_signals() -> None:
    """Run in the child before exec: a non-interactive parent may have SIGINT ignored, and
    `dagster dev` forwards SIGTERM with SIGINT's handler (see verified-facts.md)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_process(cmd: list[str], *, cwd, log_path, env=None):
    """Start ``cmd`` in its own process group (so the whole tree can be stopped), output to a file."""
    import subprocess

    log = open(log_path, "wb")  # noqa: SIM115 - closed by stop_process
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_default_signals,
    )
    proc._log_file = log  # type: ignore[attr-defined]
    return proc


def start_dagster_dev(*, bin_dir: Path, workspace: Path, dagster_home: Path, port: int, log_path, env):
    """``dagster dev`` (webserver + daemon) on 127.0.0.1:``port`` as ``make dev`` starts it: from
    ``dagster_home`` (``env``'s DAGSTER_HOME), so the repository's top-level dagster.yaml, the
    deployed instance's, does not make it warn that it is not the one in use."""
    command = [str(bin_dir / "dagster"), "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)]
    return start_process(command, cwd=dagster_home, log_path=log_path, env=env)


def stop_process(proc, timeout: float = 15.0) -> None:
    """SIGTERM the process group, SIGKILL it after ``timeout``; reap it; no strays left."""
    import os
    import signal
    import subprocess

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):  # anything left in the group (grandchildren)
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    wait_for(
        lambda: not group_alive(proc.pid), timeout=10, interval=0.1, what=f"process group {proc.pid} to exit"
    )
    log = getattr(proc, "_log_file", None)
    if log:
        log.close()


def group_alive(pgid: int) -> bool:
    """Whether a live process of group ``pgid`` remains. Zombies do not count: a grandchild
    whose parent died is re-parented to PID 1, which in a container may never reap it, and
    ``os.killpg(pgid, 0)`` would report it forever."""
    from pathlib import Path

    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process went away while we looked
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            return True
    return False


# The Dagster UI's GraphQL mutation that launches a partition backfill (what its Launch button sends).
LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}"""
BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions }
    ... on Error { message }
  }
}"""
# A backfill's statuses once it is over.
FINISHED = {"COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED", "COMPLETED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc, log: Path, ok=(200,)):
    """Wait until ``url`` answers with a status in ``ok``; fails at once, with the end of its
    log, if ``proc`` exits first."""
    import requests

    def ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            return requests.get(url, timeout=5).status_code in ok
        except requests.RequestException:
            return False

    wait_for(ready, timeout=timeout, what=url)


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
