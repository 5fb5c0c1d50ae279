"""Where monthly TLC trip files come from, behind one resource: ``TripSource``.

Three implementations of ``MonthlyFiles`` (one raw parquet table per taxi type and month):

* ``TlcDownload``: the TLC's public files, downloaded once into a cache in ``MLOPS_HOME``
  with timeouts, retries and atomic writes (a half-written file is never read);
* ``LocalFolder``: a folder of monthly files (``TRIP_DATA_DIR``), no network at all;
* ``Synthetic``: the deterministic generator in ``synthetic.py``, for offline demos and tests.

``TripSource.load_trips`` reads the months covering a period, normalises each file to the
canonical schema and cleans the rows; ``TripSource.days`` gives a period one cleaned day at a
time (what the ``trips`` asset reads a backfill of any length with). The last normalised
month read is kept, as Arrow, for the rest of the run (only that one: memory does not grow
with the period), so reading a month again, or its days one after another, reads the file once.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import requests
from pydantic import PrivateAttr

from mlops_assets.data.synthetic import CALENDAR, Scenario, generate_month, scenarios_in, zone_lookup
from mlops_core import schema
from mlops_core.segments import ZoneLookup, source_columns, tlc_zones
from mlops_core.specs import ModelSpec

log = logging.getLogger(__name__)

TLC_BASE_URL = "https://d37ci6vzurychx.cloudfront.net/trip-data"


class TripDataError(RuntimeError):
    """Trip data that cannot be obtained; the message says what to do about it."""


def file_name(taxi_type: str, month: str) -> str:
    return f"{taxi_type}_tripdata_{month}.parquet"


def read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise schema.SchemaError(f"{path}: not a readable parquet file ({exc})") from exc


class MonthlyFiles(Protocol):
    def fetch(self, taxi_type: str, month: str) -> tuple[pa.Table, str]:
        """The raw table of one month and a description of where it came from."""
        ...


class LocalFolder:
    def __init__(self, directory: Path):
        self.directory = directory

    def fetch(self, taxi_type: str, month: str) -> tuple[pa.Table, str]:
        path = self.directory / file_name(taxi_type, month)
        if not path.is_file():
            held = sorted(p.name for p in self.directory.glob(f"{taxi_type}_tripdata_*.parquet"))
            raise TripDataError(
                f"TRIP_DATA_DIR={self.directory} has no {path.name} "
                f"(it holds: {', '.join(held) or 'no ' + taxi_type + ' files'})"
            )
        return read_parquet(path), str(path)


class TlcDownload:
    """Downloads ``<base_url>/<taxi>_tripdata_<YYYY-MM>.parquet`` into ``cache_dir`` once."""

    def __init__(self, base_url: str, cache_dir: Path, timeout: float, retries: int, backoff: float):
        self.base_url = base_url.rstrip("/")
        self.cache_dir = cache_dir
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def fetch(self, taxi_type: str, month: str) -> tuple[pa.Table, str]:
        name = file_name(taxi_type, month)
        path = self.cache_dir / name
        if not path.is_file():
            self._download(f"{self.base_url}/{name}", path)
        return read_parquet(path), str(path)

    def _download(self, url: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        last_error: Exception | None = None
        for attempt in range(1, self.retries + 2):
            try:
                self._download_once(url, path)
                return
            except _Permanent as exc:
                raise TripDataError(str(exc)) from None
            except (requests.RequestException, _Retryable) as exc:
                last_error = exc
                log.warning("download of %s failed (attempt %d): %s", url, attempt, exc)
                if attempt <= self.retries:
                    time.sleep(self.backoff * 2 ** (attempt - 1))
        raise TripDataError(
            f"could not download {url} after {self.retries + 1} attempts ({last_error}). "
            "If this machine is offline, set TRIP_DATA_DIR to a folder of TLC monthly parquet "
            "files (for example ../shared/data/nyc-tlc) and no download is attempted."
        )

    def _download_once(self, url: str, path: Path) -> None:
        with requests.get(url, stream=True, timeout=self.timeout) as response:
            if response.status_code in (403, 404):
                raise _Permanent(
                    f"{url} answered {response.status_code}: the TLC has not published this month "
                    "(files appear about two months after the month ends). Pick another month, or "
                    "set TRIP_DATA_DIR to a folder that has the file."
                )
            if response.status_code >= 500 or response.status_code == 429:
                raise _Retryable(f"{url} answered {response.status_code}")
            response.raise_for_status()
            expected = response.headers.get("Content-Length")
            fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
            tmp = Path(tmp_name)
            try:
                size = 0
                with os.fdopen(fd, "wb") as out:
                    for chunk in response.iter_content(chunk_size=1 << 20):
                        out.write(chunk)
                        size += len(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                if expected is not None and int(expected) != size:
                    raise _Retryable(f"{url}: got {size} of {expected} bytes")
                try:
                    pq.ParquetFile(tmp).metadata  # noqa: B018 - the footer must parse
                except (OSError, pa.ArrowException) as exc:
                    raise _Retryable(f"{url}: downloaded file is not valid parquet ({exc})") from exc
                os.replace(tmp, path)  # atomic: readers see no file or the whole file
            finally:
                tmp.unlink(missing_ok=True)


class _Retryable(Exception):
    pass


class _Permanent(Exception):
    pass


class Synthetic:
    def __init__(self, seed: int, trips_per_day: int, scenarios: Sequence[Scenario] = ()):
        self.seed = seed
        self.trips_per_day = trips_per_day
        self.scenarios = tuple(scenarios)

    def fetch(self, taxi_type: str, month: str) -> tuple[pa.Table, str]:
        table = generate_month(
            taxi_type, month, seed=self.seed, trips_per_day=self.trips_per_day, scenarios=self.scenarios
        )
        events = "".join(f"; {event}" for event in scenarios_in(month, self.scenarios))
        return table, f"synthetic(seed={self.seed}, {taxi_type}, {month}{events})"


def months_between(start: datetime, end: datetime) -> list[str]:
    """``YYYY-MM`` of every month overlapping ``[start, end)``."""
    periods = pd.period_range(pd.Timestamp(start), pd.Timestamp(end) - pd.Timedelta(microseconds=1), freq="M")
    return [str(p) for p in periods]


class TripSource(dg.ConfigurableResource):
    """Cleaned trips for a period, from the TLC, a local folder, or the synthetic generator.

    ``kind``: ``local`` reads ``data_dir`` (TRIP_DATA_DIR), ``tlc`` downloads into
    ``cache_dir``, ``synthetic`` generates (with the scenario calendar of ``synthetic.py``
    unless ``synthetic_scenarios`` is off); ``auto`` is ``local`` when ``data_dir`` is set,
    else ``tlc``.
    """

    kind: Literal["auto", "tlc", "local", "synthetic"] = "auto"
    data_dir: str | None = None
    base_url: str = TLC_BASE_URL
    cache_dir: str | None = None  # needed by kind tlc
    timeout_seconds: float = 60.0
    retries: int = 3
    backoff_seconds: float = 1.0
    synthetic_seed: int = 7
    synthetic_trips_per_day: int = 2200
    synthetic_scenarios: bool = True  # the storm and the new district of synthetic.CALENDAR

    _months: dict = PrivateAttr(default_factory=dict)

    def files(self) -> MonthlyFiles:
        data_dir, kind = self.data_dir, self.kind
        if kind == "auto":
            kind = "local" if data_dir else "tlc"
        if kind == "local":
            if not data_dir:
                raise TripDataError("trip source 'local' needs data_dir or TRIP_DATA_DIR")
            directory = Path(data_dir).expanduser().resolve()
            if not directory.is_dir():
                raise TripDataError(f"TRIP_DATA_DIR={directory} is not a directory")
            return LocalFolder(directory)
        if kind == "synthetic":
            scenarios = CALENDAR if self.synthetic_scenarios else ()
            return Synthetic(self.synthetic_seed, self.synthetic_trips_per_day, scenarios)
        if not self.cache_dir:
            raise TripDataError("trip source 'tlc' needs cache_dir (MLOPS_HOME/cache/tlc)")
        return TlcDownload(
            self.base_url, Path(self.cache_dir), self.timeout_seconds, self.retries, self.backoff_seconds
        )

    def zone_lookup(self) -> ZoneLookup:
        """Zone ID -> borough for this source's trips: the TLC's lookup, or the synthetic
        generator's own (its areas) for synthetic trips."""
        if self.kind == "synthetic":
            return zone_lookup(self.synthetic_seed)
        return tlc_zones()

    def describe(self) -> str:
        files = self.files()
        if isinstance(files, LocalFolder):
            return f"local folder {files.directory}"
        if isinstance(files, Synthetic):
            events = "; ".join(
                f"{s.name} {s.start}{f' .. {s.end}' if s.end else ' on'}" for s in files.scenarios
            )
            return f"synthetic generator (seed {files.seed}; scenarios: {events or 'off'})"
        return f"TLC download from {files.base_url} (cache {files.cache_dir})"

    def month_table(self, taxi_type: str, month: str, required: Iterable[str]) -> tuple[pa.Table, str]:
        """One normalised (not yet cleaned) month as an Arrow table; the last one read is kept
        (only that one: reading the next month releases it first)."""
        key = (taxi_type, month, tuple(sorted(required)))
        if key not in self._months:
            self._months.clear()
            table, origin = self.files().fetch(taxi_type, month)
            self._months[key] = (
                schema.normalize(table, source=origin, taxi_type=taxi_type, required=required),
                origin,
            )
        return self._months[key]

    def month(self, taxi_type: str, month: str, required: Iterable[str]) -> tuple[pd.DataFrame, str]:
        """One normalised (not yet cleaned) month as a frame."""
        table, origin = self.month_table(taxi_type, month, required)
        return schema.to_pandas(table), origin

    def days(
        self, spec: ModelSpec, start: datetime, end: datetime
    ) -> Iterator[tuple[str, pd.DataFrame, schema.CleanStats, str]]:
        """The cleaned trips of each day in ``[start, end)``, one day at a time: ``(day,
        frame, stats, file)``. A day's trips are those of its month's file (what a run of that
        day alone reads), cut from the month's Arrow table and only then converted and cleaned,
        so at most one month of raw Arrow data and one day of frames are in memory. Summed over
        the period the stats are the period's: the first day read from a file also carries the
        file's rows read, rows without timestamps and rows outside the period."""
        required = tuple(sorted(self._required(spec)))
        for month in months_between(start, end):
            table, origin = self.month_table(spec.taxi_type, month, required)
            first = max(pd.Timestamp(start), pd.Timestamp(month + "-01"))
            last = min(pd.Timestamp(end), pd.Timestamp(month + "-01") + pd.offsets.MonthBegin(1))
            pickup, dropoff = table.column(schema.PICKUP), table.column(schema.DROPOFF)
            timed = pc.and_(pc.is_valid(pickup), pc.is_valid(dropoff))
            file_stats = schema.CleanStats(
                rows_read=table.num_rows,
                no_timestamp=table.num_rows - int(pc.sum(timed).as_py() or 0),
                outside_period=int(pc.sum(pc.and_(timed, _outside(pickup, first, last))).as_py() or 0),
            )
            for day in pd.date_range(first, last, freq="D", inclusive="left"):
                following = day + pd.Timedelta(days=1)
                rows = table.filter(pc.and_(timed, pc.invert(_outside(pickup, day, following))))
                cleaned = list(
                    schema.clean(
                        schema.to_pandas(rows),
                        start=day.to_pydatetime(),
                        end=following.to_pydatetime(),
                        filters=spec.filters,
                    )
                )
                del rows
                # (popped as it is yielded: this generator keeps no reference to the day)
                day_stats = cleaned.pop()
                day_stats.rows_read = 0  # counted once per file, in file_stats
                yield str(day.date()), cleaned.pop(), file_stats.add(day_stats), origin
                file_stats = schema.CleanStats()
            del table, pickup, dropoff, timed  # released before the next month is read

    def load_trips(
        self,
        *,
        taxi_type: str,
        start: datetime,
        end: datetime,
        required: Iterable[str],
        filters: dict,
    ) -> tuple[pd.DataFrame, schema.CleanStats, list[str]]:
        """Cleaned trips picked up in ``[start, end)``, what was dropped, and the files read."""
        frames, origins, stats = [], [], schema.CleanStats()
        required = tuple(required)
        for month in months_between(start, end):
            raw, origin = self.month(taxi_type, month, required)
            cleaned, month_stats = schema.clean(raw, start=start, end=end, filters=filters)
            frames.append(cleaned)
            origins.append(origin)
            stats = stats.add(month_stats)
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        return frame, stats, origins

    def trips_for(
        self, spec: ModelSpec, start: datetime, end: datetime
    ) -> tuple[pd.DataFrame, schema.CleanStats, list[str]]:
        """``load_trips`` with a spec's taxi type, filters and required columns (its features
        and filtered columns)."""
        return self.load_trips(
            taxi_type=spec.taxi_type,
            start=start,
            end=end,
            required=self._required(spec),
            filters=spec.filters,
        )

    @staticmethod
    def _required(spec: ModelSpec) -> set[str]:
        """The columns a spec needs from a file: its features, filtered columns and the columns
        its segments are derived from."""
        return {
            *spec.feature_columns,
            *(c for c in spec.filters if c != schema.DURATION),
            *(c for c in source_columns(spec.monitoring.segments) if c != schema.PICKUP),
        }


def _outside(pickup: pa.ChunkedArray, first: pd.Timestamp, last: pd.Timestamp):
    """Mask of the pickups outside ``[first, last)`` (null where the pickup is null)."""
    lo = pa.scalar(first.to_pydatetime(), type=pickup.type)
    hi = pa.scalar(last.to_pydatetime(), type=pickup.type)
    return pc.or_(pc.less(pickup, lo), pc.greater_equal(pickup, hi))
