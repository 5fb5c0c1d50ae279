"""Trip sources: the TLC download path, a local folder, and the synthetic generator.

The download path runs for real against an HTTP server on loopback that serves the real TLC
files (``trip_data_dir``); the server can be told to fail, truncate or refuse, to exercise
retries, atomic cache writes and the offline message. Each ``TripSource`` is built with its
values (kind, folder, cache); which source ``TRIP_SOURCE``/``TRIP_DATA_DIR`` select is resolved
by ``Settings.from_env`` and ``resources.trip_source``. Nothing else is faked.
"""

import hashlib
import http.server
import socket
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlops_assets import resources as R
from mlops_assets.data.sources import TripDataError, TripSource, months_between
from mlops_assets.data.synthetic import generate_month
from mlops_assets.settings import Settings
from mlops_assets_tests.helpers import default_spec
from mlops_core import schema
from mlops_core.text import ConfigError

SPEC_COLUMNS = ["PULocationID", "DOLocationID", "trip_distance"]


class TlcServer:
    """Serves files from a folder like the TLC's CloudFront does, with scripted failures."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.fail_next = 0  # answer 503 to this many requests
        self.truncate_next = 0  # send only half of the body (Content-Length announces all)
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                server.requests.append(self.path)
                if server.fail_next > 0:
                    server.fail_next -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                path = server.folder / self.path.rsplit("/", 1)[-1]
                if not path.is_file():
                    self.send_response(403)  # what CloudFront answers for unknown keys
                    self.end_headers()
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.truncate_next > 0:
                    server.truncate_next -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/trip-data"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def tlc(trip_data_dir):
    with TlcServer(trip_data_dir) as server:
        yield server


def downloader(url: str, cache: Path, **kw) -> TripSource:
    return TripSource(
        kind="tlc",
        base_url=url,
        cache_dir=str(cache),
        backoff_seconds=0.01,
        timeout_seconds=5,
        **kw,
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_caches_the_exact_file(tlc, tmp_path, trip_data_dir):
    source = downloader(tlc.url, tmp_path / "cache")
    table, origin = source.files().fetch("green", "2022-02")
    cached = tmp_path / "cache" / "green_tripdata_2022-02.parquet"
    assert origin == str(cached)
    assert sha256(cached) == sha256(trip_data_dir / "green_tripdata_2022-02.parquet")
    assert table.num_rows == pq.read_metadata(cached).num_rows
    # the second read comes from the cache, not the network
    downloader(tlc.url, tmp_path / "cache").files().fetch("green", "2022-02")
    assert tlc.requests == ["/trip-data/green_tripdata_2022-02.parquet"]


def test_download_retries_server_errors(tlc, tmp_path):
    tlc.fail_next = 2
    table, _ = downloader(tlc.url, tmp_path / "c", retries=3).files().fetch("green", "2022-01")
    assert table.num_rows > 0
    assert len(tlc.requests) == 3


def test_truncated_download_is_never_cached(tlc, tmp_path):
    tlc.truncate_next = 10
    with pytest.raises(TripDataError, match="after 3 attempts") as err:
        downloader(tlc.url, tmp_path / "c", retries=2).files().fetch("green", "2022-01")
    assert "TRIP_DATA_DIR" in str(err.value)
    assert list((tmp_path / "c").iterdir()) == []  # no partial file, no temp file left behind
    # once the server behaves, the same cache works
    tlc.truncate_next = 0
    table, _ = downloader(tlc.url, tmp_path / "c").files().fetch("green", "2022-01")
    assert table.num_rows > 0


def test_unpublished_month_is_a_clear_permanent_error(tlc, tmp_path):
    with pytest.raises(TripDataError, match="has not published this month"):
        downloader(tlc.url, tmp_path / "c", retries=3).files().fetch("green", "2030-01")
    assert len(tlc.requests) == 1  # no pointless retries


def test_offline_error_points_to_trip_data_dir(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = downloader(f"http://127.0.0.1:{port}/trip-data", tmp_path / "c", retries=1)
    with pytest.raises(TripDataError) as err:
        source.files().fetch("green", "2022-01")
    message = str(err.value)
    assert "could not download http://127.0.0.1" in message
    assert "set TRIP_DATA_DIR" in message


def test_auto_uses_trip_data_dir_when_set(isolated_env, trip_data_dir):
    environ = {"MLOPS_HOME": str(isolated_env), "TRIP_SOURCE": "auto", "TRIP_DATA_DIR": str(trip_data_dir)}
    local = R.trip_source(Settings.from_env(environ))
    assert local.describe() == f"local folder {trip_data_dir.resolve()}"
    del environ["TRIP_DATA_DIR"]
    tlc = R.trip_source(Settings.from_env(environ))
    assert tlc.describe().startswith("TLC download from https://d37ci6vzurychx.cloudfront.net")


def test_synthetic_volume_is_a_setting(isolated_env):
    """SYNTHETIC_TRIPS_PER_DAY sets the generator's volume (yellow taxis' ~100,000 a day for
    bench/scale.py); a value that is not a positive number is refused with its name."""
    environ = {"MLOPS_HOME": str(isolated_env), "TRIP_SOURCE": "synthetic", "SYNTHETIC_SCENARIOS": "off"}
    assert R.trip_source(Settings.from_env(environ)).synthetic_trips_per_day == 2200
    source = R.trip_source(Settings.from_env({**environ, "SYNTHETIC_TRIPS_PER_DAY": "500"}))
    table, _ = source.files().fetch("green", "2022-02")
    # 20 weekdays at 500 and 8 weekend days at 400, Poisson noise: 13,200 expected
    assert 12_800 < table.num_rows < 13_600
    for bad in ("0", "-5", "2.5", "many"):
        with pytest.raises(ConfigError, match="SYNTHETIC_TRIPS_PER_DAY"):
            Settings.from_env({**environ, "SYNTHETIC_TRIPS_PER_DAY": bad})


def test_local_folder_missing_month_lists_what_it_has(trip_data_dir):
    with pytest.raises(
        TripDataError,
        match=r"has no green_tripdata_2023-05\.parquet \(it holds: green_tripdata_2021-01",
    ):
        TripSource(kind="local", data_dir=str(trip_data_dir)).files().fetch("green", "2023-05")


def test_corrupt_file_error_names_the_file(tmp_path):
    (tmp_path / "green_tripdata_2022-01.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(
        schema.SchemaError, match=r"green_tripdata_2022-01\.parquet: not a readable parquet file"
    ):
        TripSource(kind="local", data_dir=str(tmp_path)).files().fetch("green", "2022-01")


def test_load_trips_spans_months_and_reads_each_once(trip_data_dir):
    source = TripSource(kind="local", data_dir=str(trip_data_dir))
    frame, stats, files = source.load_trips(
        taxi_type="green",
        start=datetime(2022, 1, 31),
        end=datetime(2022, 2, 2),
        required=SPEC_COLUMNS,
        filters={},
    )
    assert [Path(f).name for f in files] == [
        "green_tripdata_2022-01.parquet",
        "green_tripdata_2022-02.parquet",
    ]
    assert set(schema.day_keys(frame)) == {"2022-01-31", "2022-02-01"}
    assert stats.rows_kept == len(frame)
    # Only the last month read is kept: memory does not grow with the period.
    assert [key[1] for key in source._months] == ["2022-02"]
    february = next(iter(source._months.values()))
    source.load_trips(
        taxi_type="green",
        start=datetime(2022, 2, 5),
        end=datetime(2022, 2, 6),
        required=SPEC_COLUMNS,
        filters={},
    )
    assert next(iter(source._months.values())) is february  # February came from memory


def test_days_reads_a_period_one_day_at_a_time(trip_data_dir):
    """``days`` gives each day what reading that day alone gives (its month's file, cleaned),
    keeps one month of the source at most, and its stats add up to the period's."""
    source = TripSource(kind="local", data_dir=str(trip_data_dir))
    spec = default_spec()
    start, end = datetime(2022, 1, 30), datetime(2022, 3, 2)
    seen, total = [], schema.CleanStats()
    for day, frame, stats, origin in source.days(spec, start, end):
        assert [key[1] for key in source._months] == [day[:7]]
        assert Path(origin).name == f"green_tripdata_{day[:7]}.parquet"
        alone, alone_stats, _ = TripSource(kind="local", data_dir=str(trip_data_dir)).trips_for(
            spec, datetime.fromisoformat(day), datetime.fromisoformat(day) + timedelta(days=1)
        )
        pd.testing.assert_frame_equal(frame, alone)
        assert stats.rows_kept == alone_stats.rows_kept == len(frame)
        seen.append(day)
        total = total.add(stats)
    assert seen == [str((start + timedelta(days=i)).date()) for i in range(31)]
    files = ("2022-01", "2022-02", "2022-03")
    assert total.rows_read == sum(
        pq.ParquetFile(trip_data_dir / f"green_tripdata_{m}.parquet").metadata.num_rows for m in files
    )
    assert (
        total.rows_read
        == total.no_timestamp + total.outside_period + sum(total.filtered.values()) + total.rows_kept
    )


def test_months_between():
    assert months_between(datetime(2022, 1, 31), datetime(2022, 3, 1)) == ["2022-01", "2022-02"]
    assert months_between(datetime(2022, 2, 1), datetime(2022, 2, 2)) == ["2022-02"]


def test_synthetic_is_deterministic_and_tlc_shaped(trip_data_dir):
    a = generate_month("green", "2022-02", seed=3)
    b = generate_month("green", "2022-02", seed=3)
    assert a.equals(b)
    assert not a.equals(generate_month("green", "2022-02", seed=4))
    real = pq.read_schema(trip_data_dir / "green_tripdata_2022-02.parquet")
    assert a.schema.names == real.names
    assert [f.type for f in a.schema] == [f.type for f in real]
    df = schema.to_pandas(schema.normalize(a, source="synthetic", taxi_type="green"))
    out, stats = schema.clean(df, start=datetime(2022, 2, 1), end=datetime(2022, 3, 1), filters={})
    assert stats.outside_period > 0
    duration = (out[schema.DROPOFF] - out[schema.PICKUP]).dt.total_seconds() / 60
    assert 8 < duration.median() < 25  # real green trips: about 12 minutes
    assert 1.5 < out["trip_distance"].median() < 3.5
    assert out["passenger_count"].isna().mean() == pytest.approx(0.10, abs=0.02)
    per_day = pd.Series(schema.day_keys(out)).value_counts()
    assert per_day.min() > 1000


def test_synthetic_source_has_yellow_layout():
    table, origin = (
        TripSource(kind="synthetic", synthetic_trips_per_day=50).files().fetch("yellow", "2021-03")
    )
    assert "tpep_pickup_datetime" in table.column_names
    assert origin == "synthetic(seed=7, yellow, 2021-03; new district 2021-03-08 .. 2021-03-31)"
    out = schema.normalize(table, source=origin, taxi_type="yellow")
    assert out.column("trip_type").null_count == out.num_rows
