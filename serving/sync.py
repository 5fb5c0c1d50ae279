"""How the worker processes of one gunicorn master agree on the model they serve.

gunicorn runs several workers and a ``POST /reload`` lands in one of them. That worker
resolves ``MODEL_URI``, loads the model, swaps it in and *publishes* the ``Pin`` (which
model, not which alias) with a new generation number in a folder the workers share
(``SERVING_STATE_DIR``, a fresh temporary folder per master made by ``gunicorn.conf.py``).
Every worker watches the pin file (one ``stat`` every 0.2 s), loads a newer pin, swaps it in
and writes an acknowledgement; the reloading worker waits for those before it answers, so
after ``/reload`` returns, every worker serves the new model.

An exclusive ``flock`` serialises "resolve, load, publish" across workers: the pin published
last is the one resolved last, and a booting worker either follows the published pin or is
the first to publish one. Files are replaced atomically (write, then ``os.replace``).

Files: ``pin.json`` (generation, pin, who published it and when), ``worker-<pid>.json``
(the generation and version a worker serves, or the error it hit following a pin), ``lock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from serving.source import Pin

PIN_FILE = "pin.json"
LOCK_FILE = "lock"
WORKER_PREFIX = "worker-"


@dataclass(frozen=True)
class Published:
    generation: int
    pin: Pin


@dataclass(frozen=True)
class WorkerState:
    pid: int
    generation: int
    version: str | None
    error: str | None = None
    error_generation: int = 0


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SharedState:
    def __init__(self, folder: Path):
        self.folder = folder

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive across processes (and across threads: each call opens its own file)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / LOCK_FILE, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # --- the pin ---------------------------------------------------------------------------
    def pin_stamp(self) -> int | None:
        """A cheap change marker of the pin file (its mtime in ns), None while there is none."""
        try:
            return os.stat(self.folder / PIN_FILE).st_mtime_ns
        except FileNotFoundError:
            return None

    def read(self) -> Published | None:
        try:
            raw = json.loads((self.folder / PIN_FILE).read_text())
        except FileNotFoundError:
            return None
        return Published(int(raw["generation"]), Pin(**raw["pin"]))

    def publish(self, pin: Pin) -> int:
        """Write ``pin`` as the next generation (call with ``lock()`` held); its number."""
        current = self.read()
        generation = (current.generation if current else 0) + 1
        payload = {
            "generation": generation,
            "pin": json.loads(pin.to_json()),
            "published_by": os.getpid(),
            "published_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        _write_atomically(self.folder / PIN_FILE, json.dumps(payload, sort_keys=True))
        return generation

    # --- the workers -----------------------------------------------------------------------
    def ack(self, state: WorkerState) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{WORKER_PREFIX}{state.pid}.json"
        _write_atomically(path, json.dumps(state.__dict__, sort_keys=True))

    def forget(self, pid: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.folder / f"{WORKER_PREFIX}{pid}.json").unlink()

    def workers(self) -> list[WorkerState]:
        """The live workers' states (files of dead workers are removed on the way)."""
        out = []
        for path in sorted(self.folder.glob(f"{WORKER_PREFIX}*.json")):
            try:
                state = WorkerState(**json.loads(path.read_text()))
            except (FileNotFoundError, ValueError, TypeError):
                continue
            if _alive(state.pid):
                out.append(state)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return out

    def wait_for(self, generation: int, timeout: float) -> dict:
        """Wait until every live worker serves ``generation`` (or failed to); a summary."""
        deadline = time.monotonic() + timeout
        while True:
            workers = self.workers()
            updated = [w for w in workers if w.generation >= generation]
            failed = [w for w in workers if w.generation < generation and w.error_generation >= generation]
            lagging = [w for w in workers if w not in updated and w not in failed]
            if not lagging or time.monotonic() >= deadline:
                return {
                    "total": len(workers),
                    "updated": len(updated),
                    "lagging": [w.pid for w in lagging],
                    "failed": [{"pid": w.pid, "error": w.error} for w in failed],
                }
            time.sleep(0.02)
