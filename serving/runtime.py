"""The model a worker serves, and how it is replaced without failing a request.

``ModelService.current`` is one reference to an immutable ``LoadedModel`` (bundle, pin,
version, compiled input rules). A request reads it once and uses that object to the end,
so a reload that swaps the reference mid-request changes nothing for requests in flight.
A reload builds the new ``LoadedModel`` completely (load, compile the input rules, one
warm-up prediction on a reference row) before the one assignment that swaps it in; if any
step fails, the old model keeps serving and the caller gets the reason.

A worker's model thread loads the model when the worker starts, and under gunicorn the
worker accepts no connection until that first load has finished (``wait_loaded``, called
from ``post_worker_init`` in gunicorn.conf.py): a worker that answers has its model, so
after one ``/ready`` 200 no request meets a worker still loading (issue 28). If there is no
model to load, the worker starts anyway and ``/ready`` says 503 with the reason (no crash,
no boot loop) until a ``/reload`` brings one in. Across the workers of one gunicorn master
the model is kept in step through ``sync.SharedState``. ``MODEL_POLL_SECONDS`` makes each
worker re-resolve the alias every N seconds (an alias lookup costs a few ms) and reload
when it moved.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from mlops_core.bundle import ModelBundle
from mlops_core.registry import MlflowRegistry
from mlops_core.text import redact_url
from serving import config, source
from serving.inputs import TripInputs
from serving.source import ModelSource, ModelUnavailable, Pin
from serving.sync import Published, SharedState, WorkerState

log = logging.getLogger("serving")

WATCH_INTERVAL_SECONDS = 0.2
FOLLOW_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class LoadedModel:
    bundle: ModelBundle
    pin: Pin
    inputs: TripInputs
    version: str
    source: str  # MODEL_URI (or the path), without secrets
    registry: str | None  # the tracking URI it came from, without secrets
    loaded_at: str
    load_seconds: float

    @property
    def name(self) -> str:
        return self.pin.name

    @property
    def alias(self) -> str | None:
        return self.pin.alias

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return self.bundle.predict(df)

    def predict_one(self, trip: dict) -> float:
        return self.bundle.predict_one(trip)


@dataclass(frozen=True)
class ReloadResult:
    old: LoadedModel | None
    new: LoadedModel
    workers: dict

    @property
    def changed(self) -> bool:
        return self.old is None or not self.old.pin.same_model(self.new.pin)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ModelService:
    def __init__(self) -> None:
        self._current: LoadedModel | None = None
        self._problem = "the model has not been loaded yet"
        self._lock = threading.RLock()
        self._applied_generation = 0  # of the shared pin this worker serves
        self._registry: MlflowRegistry | None = None
        self._started_pid: int | None = None
        self._stop = threading.Event()
        self._first_load = threading.Event()  # set once the first load has finished (or failed)
        self._thread: threading.Thread | None = None
        self._follow_error: tuple[int, str] | None = None

    # --- what requests read ----------------------------------------------------------------
    @property
    def current(self) -> LoadedModel | None:
        return self._current

    @property
    def problem(self) -> str:
        """Why there is no model (empty while one is loaded)."""
        return "" if self._current is not None else self._problem

    # --- building a model ------------------------------------------------------------------
    def registry(self) -> MlflowRegistry:
        uri, cache = config.tracking_uri(), str(config.bundle_cache_dir())
        if self._registry is None or (self._registry.tracking_uri, self._registry.cache_dir) != (uri, cache):
            self._registry = MlflowRegistry(tracking_uri=uri, cache_dir=cache)
        return self._registry

    def _source(self) -> ModelSource:
        return ModelSource.parse(config.model_uri())

    def _resolve(self) -> Pin:
        return self._source().resolve(self.registry())

    def _build(self, pin: Pin) -> LoadedModel:
        started = time.perf_counter()
        if delay := config.load_delay_seconds():  # tests: a slow load, on purpose
            log.warning("SERVING_TEST_LOAD_DELAY_SECONDS=%s: sleeping before loading %s", delay, pin.name)
            time.sleep(delay)
        registry = self.registry()
        bundle = source.load(pin, registry)
        if pin.kind == "path":  # what was read, even if the folder changed since resolve()
            pin = replace(pin, version=bundle.info.version, fingerprint=bundle.info.fingerprint)
        try:
            inputs = TripInputs(bundle.features, config.max_batch_rows(), bundle.info.domain)
            _warm_up(bundle)
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelUnavailable(f"{pin.name}: the model cannot serve: {exc}") from exc
        if pin.kind == "registry":
            version = str(pin.version)
        else:
            version = bundle.info.version or f"fingerprint:{bundle.info.fingerprint}"
        src = self._source()
        return LoadedModel(
            bundle=bundle,
            pin=pin,
            inputs=inputs,
            version=version,
            source=redact_url(src.describe()),
            registry=redact_url(registry.uri()) if pin.kind == "registry" else None,
            loaded_at=_now(),
            load_seconds=round(time.perf_counter() - started, 3),
        )

    def _swap(self, new: LoadedModel, why: str) -> None:
        old = self._current
        self._current = new  # the one assignment requests can observe
        self._problem = ""
        log.info(
            "serving %s version %s (%s; was %s; loaded in %.3f s from %s)",
            new.name,
            new.version,
            why,
            old.version if old else "none",
            new.load_seconds,
            new.source,
        )

    # --- shared state across workers -------------------------------------------------------
    @staticmethod
    def _shared() -> SharedState | None:
        folder = config.state_dir()
        return SharedState(folder) if folder else None

    def _ack(self, shared: SharedState | None) -> None:
        if shared is None:
            return
        err_gen, err = self._follow_error or (0, None)
        shared.ack(
            WorkerState(
                pid=os.getpid(),
                generation=self._applied_generation,
                version=self._current.version if self._current else None,
                error=err,
                error_generation=err_gen,
            )
        )

    # --- loading ---------------------------------------------------------------------------
    def load_initial(self) -> None:
        """At start: follow the pin the other workers serve, else resolve and publish one."""
        shared = self._shared()
        with self._lock, shared.lock() if shared else contextlib.nullcontext():
            published = shared.read() if shared else None
            try:
                if published is not None:
                    new = self._build(published.pin)
                    self._applied_generation = published.generation
                else:
                    new = self._build(self._resolve())
                    self._applied_generation = (
                        shared.publish(new.pin) if shared else self._applied_generation + 1
                    )
            except ModelUnavailable as exc:
                self._problem = str(exc)
                log.warning("no model loaded: %s", exc)
                self._ack(shared)
                return
            self._swap(new, "start")
            self._ack(shared)

    def reload(self, *, reason: str = "reload") -> ReloadResult:
        """Re-resolve ``MODEL_URI``, swap in the model it names now, bring the workers along.

        Raises ``ModelUnavailable`` (the old model, if any, keeps serving).
        """
        shared = self._shared()
        generation = None
        with self._lock, shared.lock() if shared else contextlib.nullcontext():
            old = self._current
            published = shared.read() if shared else None
            try:
                pin = self._resolve()
                same = old is not None and old.pin.same_model(pin)
                new = old if same else self._build(pin)
            except ModelUnavailable as exc:
                if old is None:
                    self._problem = str(exc)
                raise
            if shared is not None:
                if published is None or not published.pin.same_model(new.pin):
                    generation = shared.publish(new.pin)
                    self._applied_generation = generation
                else:
                    self._applied_generation = max(self._applied_generation, published.generation)
            elif new is not old:
                self._applied_generation += 1
            self._follow_error = None
            if new is not old:
                self._swap(new, reason)
            self._ack(shared)
        if shared is not None and generation is not None:
            workers = shared.wait_for(generation, config.reload_wait_seconds())
        elif shared is not None:
            workers = shared.wait_for(self._applied_generation, config.reload_wait_seconds())
        else:
            workers = {"total": 1, "updated": 1, "lagging": [], "failed": []}
        return ReloadResult(old, new, workers)

    def follow(self, published: Published) -> None:
        """Serve the pin another worker published (no resolving: the same model as theirs)."""
        shared = self._shared()
        with self._lock:
            if published.generation <= self._applied_generation:
                return
            current = self._current
            if current is not None and current.pin.same_model(published.pin):
                self._applied_generation = published.generation
                self._ack(shared)
                return
            try:
                new = self._build(published.pin)
            except ModelUnavailable as exc:
                self._follow_error = (published.generation, str(exc))
                log.error("could not follow to %s: %s", published.pin, exc)
                self._ack(shared)
                raise
            self._applied_generation = published.generation
            self._follow_error = None
            self._swap(new, f"following generation {published.generation}")
            self._ack(shared)

    # --- the background thread -------------------------------------------------------------
    def start(self, *, background: bool = True) -> None:
        """Load the model (in a thread unless ``background=False``) and keep it in step."""
        if self._started_pid == os.getpid():
            return
        self._started_pid = os.getpid()
        self._stop.clear()
        self._first_load.clear()
        config.bound_mlflow_client_retries()
        self._ack(self._shared())
        if not background:
            self.load_initial()
            self._first_load.set()
            return
        self._thread = threading.Thread(target=self._run, name="model-sync", daemon=True)
        self._thread.start()

    def wait_loaded(self, heartbeat=None, alive=None, interval: float = 0.5) -> None:
        """Block until the model thread's first load has finished (a model is in, or why not
        is known), calling ``heartbeat()`` every ``interval`` s meanwhile; stop waiting when
        ``alive()`` turns false (the worker is asked to exit). gunicorn calls this before a
        worker accepts connections, with the worker's ``notify`` as the heartbeat, so a slow
        registry delays readiness instead of getting the worker killed by its timeout."""
        if self._thread is None:
            return
        while not self._first_load.wait(interval):
            if alive is not None and not alive():
                return
            if heartbeat is not None:
                heartbeat()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)  # a daemon thread: never hold up a worker exit
        self._thread = None
        self._started_pid = None
        shared = self._shared()
        if shared is not None:
            shared.forget(os.getpid())

    def _run(self) -> None:
        try:
            self.load_initial()
        except Exception:  # never let the thread die silently
            log.exception("loading the model failed")
        # Everything imported and loaded so far lives as long as the process: take it out of
        # the garbage collector's sight. A full collection otherwise walks ~400k objects
        # (Django, pandas, sklearn, mlflow, dagster): ~250 ms with the worker stalled.
        gc.collect()
        gc.freeze()
        self._first_load.set()  # the worker may accept connections now
        try:
            if self._current is not None and self._current.pin.kind == "registry":
                self.registry().client()  # import mlflow now, not in the first /reload (~2 s)
                gc.collect()
                gc.freeze()
        except Exception:
            log.exception("preparing the MLflow client failed")
        shared = self._shared()
        poll = config.poll_seconds()
        next_poll = time.monotonic() + poll if poll else None
        stamp, retry_at = None, 0.0
        while not self._stop.wait(WATCH_INTERVAL_SECONDS):
            try:
                if shared is not None:
                    new_stamp = shared.pin_stamp()
                    retrying = self._follow_error is not None and time.monotonic() >= retry_at
                    if new_stamp != stamp or retrying:
                        stamp = new_stamp
                        published = shared.read()
                        if published is not None:
                            try:
                                self.follow(published)
                            except ModelUnavailable:
                                retry_at = time.monotonic() + FOLLOW_RETRY_SECONDS
                if next_poll is not None and time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + poll
                    self._poll()
            except Exception:
                log.exception("keeping the model in step failed; trying again")

    def _poll(self) -> None:
        try:
            pin = self._resolve()
        except ModelUnavailable as exc:
            log.warning("poll: %s", exc)
            return
        current = self._current
        if current is not None and current.pin.same_model(pin):
            return
        try:
            self.reload(reason="poll")
        except ModelUnavailable as exc:
            log.warning("poll: the alias moved but the model cannot be loaded: %s", exc)


def _warm_up(bundle: ModelBundle) -> None:
    """One prediction on a reference row: a broken model fails here, not under traffic."""
    columns = bundle.features.columns
    reference = bundle.reference
    if len(reference) and set(columns) <= set(reference.columns):
        prediction = bundle.predict(reference[columns].iloc[:1])
        if not np.isfinite(prediction).all():
            raise ValueError(f"a reference row scores {prediction[0]!r}")


SERVICE = ModelService()
