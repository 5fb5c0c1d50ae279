"""Grafana: the provisioning files, the dashboard, and every query it sends, on real data.

Exercises config/grafana_datasources.yaml, config/grafana_dashboards.yaml and dashboards/*.json
as Grafana reads them (datasource uid and type behind every panel, target, variable and
annotation; the provider's folder is the compose mount; unique panel ids; the `model`
variable), and runs every panel's SQL, the variable's query and the annotation queries, with
the dashboard variable and Grafana's PostgreSQL macros expanded the way Grafana does
(support.grafana_sql, after pkg/tsdb/grafana-postgresql-datasource/macros.go), as the
read-only Grafana role, against a metrics DB made by the real init script and filled by a
real backfill: the monitoring assets on the real TLC files of February 2022 with model v1
(trained on January 2022), then one evaluation of the real alert sensor. The quality panels
(RMSE with the holdout RMSE of the model in effect, bias, rmse_ratio) return the monitored
days' dummy_metrics values; the alert panels read ``alerts``.

The alerts are real too: at the default spec's thresholds v1 breaches neither rule in February
2022, so the backfill and the sensor run with both lowered, as an operator who wants earlier
warnings would set them: the drift threshold at 0.10 (what DRIFT_THRESHOLD=0.10 gives; here the
``Settings`` and the spec get the value) and the rmse_ratio rule at 1.20 (still 2 days, 500
trips). The breaches of both rules are recorded in ``alerts`` and emailed to the outbox (no SMTP
server configured), and the alert annotations are checked against the email's lines. Replaced:
Grafana itself (its container is not run here; its macro expansion is reproduced).
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from mlops_assets import constants as C
from mlops_assets.alerting.messages import breach_line
from mlops_assets.alerting.sensor import sensor_name
from mlops_assets.alerting.store import AlertStore, IncidentStore
from mlops_assets.definitions import build_defs
from mlops_assets.lib.storage.engine import MetricsDB
from mlops_assets.monitoring.store import DailyMetricsStore
from mlops_assets.resources import build_resources
from mlops_assets.settings import Settings
from mlops_assets.training.store import TimelineStore
from mlops_assets_tests.conftest import PG_ADMIN_URL
from mlops_assets_tests.helpers import copy_timeline, default_spec, failure_message
from mlops_assets_tests.stack.support import (
    REPO,
    SECRETS,
    compose,
    dotenv,
    drop_stack_databases,
    expand_macros,
    grafana_sql,
    init_stack_databases,
    service_environment,
)
from mlops_core.specs import DRIFT_METHODS, PREDICTION_DRIFT, ModelSpec

SPEC = default_spec()
THRESHOLD = 0.10
QUALITY_THRESHOLD = 1.20  # the rmse_ratio rule's, for the backfill (the default spec says 1.5)
FEBRUARY = (datetime(2022, 2, 1, tzinfo=UTC), datetime(2022, 3, 1, tzinfo=UTC))
DATASOURCES = yaml.safe_load((REPO / "config" / "grafana_datasources.yaml").read_text())
PROVIDERS = yaml.safe_load((REPO / "config" / "grafana_dashboards.yaml").read_text())
DASHBOARD_FILES = sorted((REPO / "dashboards").glob("*.json"))
DASHBOARDS = {path.name: json.loads(path.read_text()) for path in DASHBOARD_FILES}


def with_quality_threshold(spec: ModelSpec, threshold: float) -> ModelSpec:
    """``spec`` with its rmse_ratio rule's threshold set to ``threshold`` (the rest as it is)."""
    rules = tuple(
        r.model_copy(update={"threshold": threshold}) if r.metric == "rmse_ratio" else r
        for r in spec.monitoring.rules
    )
    assert rules != spec.monitoring.rules, "the spec has no rmse_ratio rule"
    return spec.model_copy(update={"monitoring": spec.monitoring.model_copy(update={"rules": rules})})


def quality_rule(spec: ModelSpec):
    (rule,) = [r for r in spec.monitoring.rules if r.metric == "rmse_ratio"]
    return rule


def panels():
    for name, dashboard in DASHBOARDS.items():
        for panel in dashboard["panels"]:
            yield name, panel


def queries():
    """(id, dashboard, kind, title, target) of every query a dashboard sends."""
    for name, dashboard in DASHBOARDS.items():
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                yield f"{name}:panel:{panel['title']}", dashboard, "panel", panel["title"], target
        for annotation in dashboard["annotations"]["list"]:
            yield (
                f"{name}:annotation:{annotation['name']}",
                dashboard,
                "annotation",
                annotation["name"],
                annotation["target"],
            )


# --- the files, as Grafana reads them ---------------------------------------------------------
def test_provisioning_matches_the_compose_mounts_and_environment():
    grafana = compose(dotenv(**SECRETS))["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"] if isinstance(v, str)}
    assert mounts["./config/grafana_datasources.yaml"].startswith("/etc/grafana/provisioning/datasources/")
    assert mounts["./config/grafana_dashboards.yaml"].startswith("/etc/grafana/provisioning/dashboards/")
    (provider,) = PROVIDERS["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == mounts["./dashboards"]
    home = service_environment(compose(dotenv(**SECRETS)), "grafana")[
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert Path(home).parent.as_posix() == mounts["./dashboards"]
    assert (REPO / "dashboards" / Path(home).name).is_file()
    # the datasource's credentials come from variables the grafana container has
    env = service_environment(compose(dotenv(**SECRETS)), "grafana")
    text = (REPO / "config" / "grafana_datasources.yaml").read_text()
    referenced = set(re.findall(r"\$__env\{(\w+)\}", text))
    assert referenced == {"GRAFANA_DB_USER", "GRAFANA_DB_PASSWORD", "METRICS_DB"}
    assert referenced <= set(env)
    (datasource,) = DATASOURCES["datasources"]
    assert datasource["url"] == "db:5432"  # the compose service
    assert datasource["editable"] is False


def test_every_reference_points_at_the_provisioned_datasource():
    provisioned = {(ds["uid"], ds["type"]) for ds in DATASOURCES["datasources"]}
    assert len({uid for uid, _ in provisioned}) == len(DATASOURCES["datasources"])
    refs = []
    for dashboard in DASHBOARDS.values():
        refs += [v["datasource"] for v in dashboard["templating"]["list"]]
        refs += [a["datasource"] for a in dashboard["annotations"]["list"]]
        refs += [a["target"]["datasource"] for a in dashboard["annotations"]["list"]]
        for panel in dashboard["panels"]:
            refs.append(panel["datasource"])
            refs += [t["datasource"] for t in panel["targets"]]
    assert refs and all((ref["uid"], ref["type"]) in provisioned for ref in refs), refs


def test_dashboards_have_uids_unique_panel_ids_and_the_model_variable():
    assert DASHBOARD_FILES, "no dashboard in dashboards/"
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids) and all(uids)
    for name, dashboard in DASHBOARDS.items():
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), name
        (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "model"]
        assert variable["type"] == "query"
        assert " ".join(variable["query"].lower().split()).startswith(
            "select distinct model_name from dummy_metrics"
        )
        # panels do not overlap on the 24-column grid
        cells = set()
        for panel in dashboard["panels"]:
            g = panel["gridPos"]
            assert g["x"] + g["w"] <= 24, panel["title"]
            area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not area & cells, f"{panel['title']} overlaps another panel"
            cells |= area


@pytest.mark.parametrize("qid", [q[0] for q in queries()])
def test_every_query_filters_by_time_range_and_model(qid):
    (_, _, kind, title, target) = next(q for q in queries() if q[0] == qid)
    sql = target["rawSql"]
    # a point in the range, or (a region: an incident) a span overlapping it
    in_range = "$__timeFilter(" in sql or ("$__timeFrom()" in sql and "$__timeTo()" in sql)
    assert in_range, f"{kind} {title} ignores the time range"
    assert "'${model}'" in sql or "'$model'" in sql, f"{kind} {title} ignores the model variable"
    assert target["format"] in ("time_series", "table")
    if target["format"] == "time_series":
        assert "$__time(" in sql or "AS time" in sql


def test_grafana_macros_expand_like_grafana():
    start, end = datetime(2017, 4, 21, 5, 1, 17, tzinfo=UTC), datetime(2017, 4, 21, 5, 6, 17, tzinfo=UTC)
    assert expand_macros("WHERE $__timeFilter(time_column)", start, end) == (
        "WHERE time_column BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-21T05:06:17Z'"
    )
    assert expand_macros("SELECT $__time(dateColumn)", start, end) == 'SELECT dateColumn AS "time"'
    assert expand_macros("$__timeFrom() $__timeTo()", start, end) == (
        "'2017-04-21T05:01:17Z' '2017-04-21T05:06:17Z'"
    )
    assert expand_macros("SELECT $__timeGroupAlias(dateColumn,'5m')", start, end) == (
        'SELECT floor(extract(epoch from dateColumn)/300)*300 AS "time"'
    )
    assert expand_macros("$__unixEpochFilter(t)", start, end) == "t >= 1492750877 AND t <= 1492751177"
    assert grafana_sql("x = '${model}' AND y = '$model'", {"model": "o'hare"}, start, end) == (
        "x = 'o''hare' AND y = 'o''hare'"
    )


# --- the queries, on a real backfill --------------------------------------------------------
@pytest.fixture(scope="module")
def backfill(trained_home, trip_data_dir, tmp_path_factory):
    """February 2022 monitored with v1 into a stack metrics DB, then one real sensor evaluation."""
    databases = init_stack_databases(PG_ADMIN_URL)
    home = tmp_path_factory.mktemp("grafana_home")
    shutil.copytree(trained_home, home, dirs_exist_ok=True)
    try:
        trained = Settings.for_home(home, trip_data_dir=trip_data_dir)
        copy_timeline(SPEC.name, trained.metrics_database_url, databases.metrics_url)  # v1, as trained
        metrics = MetricsDB(url=databases.metrics_url)
        settings = Settings.for_home(
            home,
            trip_data_dir=trip_data_dir,
            drift_threshold=THRESHOLD,
            metrics_database_url=databases.metrics_url,
        )
        spec = with_quality_threshold(default_spec(settings.drift_threshold), QUALITY_THRESHOLD)
        defs = build_defs([spec], build_resources(settings))
        keys = [
            dg.AssetKey([spec.name, n]) for n in (C.TRIPS, C.PREDICTIONS, C.DRIFT_METRICS, C.DUMMY_METRICS)
        ]
        result = dg.materialize(
            list(defs.assets),
            selection=keys,
            resources=defs.resources,
            tags={
                "dagster/asset_partition_range_start": "2022-02-01",
                "dagster/asset_partition_range_end": "2022-02-28",
            },
            raise_on_error=False,
        )
        assert result.success, failure_message(result)
        sensor = defs.resolve_sensor_def(sensor_name(spec))
        with dg.build_sensor_context(
            instance=dg.DagsterInstance.ephemeral(), cursor=None, resources=defs.resources
        ) as context:
            evaluation = sensor(context)
        rows = pd.DataFrame([r.as_dict() for r in DailyMetricsStore(metrics).rows(spec.name)])
        alerts = pd.DataFrame(AlertStore(metrics).all(spec.name))
        incidents = pd.DataFrame(IncidentStore(metrics).all(spec.name))
        outbox = sorted((home / "outbox").glob("*.eml"))
        yield {
            "db": databases,
            "spec": spec,
            "rows": rows,
            "alerts": alerts,
            "incidents": incidents,
            "timeline": TimelineStore(metrics).entries(spec.name),
            "evaluation": evaluation,
            "outbox": outbox,
        }
    finally:
        drop_stack_databases(PG_ADMIN_URL, databases)


def run_as_grafana(backfill, sql: str) -> pd.DataFrame:
    engine = sa.create_engine(backfill["db"].grafana_url)
    try:
        with engine.connect() as conn:
            return pd.read_sql_query(sa.text(sql.replace(":", r"\:")), conn)
    finally:
        engine.dispose()


def expected_quality_breaches(backfill) -> list:
    """The days the (lowered) rmse_ratio rule breaches, judged here from the dummy_metrics rows:
    the last day of each run of ``for_days`` consecutive days past the threshold with at least
    ``min_rows`` trips."""
    rule = quality_rule(backfill["spec"])
    rows = backfill["rows"].set_index("timestamp")
    qualifying = set(rows.index[(rows["rmse_ratio"] > rule.threshold) & (rows["n_rows"] >= rule.min_rows)])
    return [
        day
        for day in sorted(qualifying)
        if all(day - pd.Timedelta(days=i) in qualifying for i in range(rule.for_days))
    ]


def email_lines(backfill) -> list[str]:
    (path,) = backfill["outbox"]
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    text = message.get_body(preferencelist=("plain",)).get_content()
    return [line for line in text.splitlines() if line.startswith("Threshold")]


def model_values(backfill) -> list[str]:
    (dashboard,) = DASHBOARDS.values()
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "model"]
    return run_as_grafana(backfill, variable["query"]).iloc[:, 0].tolist()


@pytest.mark.postgres
def test_the_backfill_has_real_breaches_that_were_emailed(backfill, report_figure):
    rows, alerts = backfill["rows"], backfill["alerts"]
    assert len(rows) == 28 and set(rows["model_version"]) == {"1"}
    assert (rows["drift_threshold"] == THRESHOLD).all()
    assert set(rows["drift_method"]) == {"wasserstein"}
    assert rows[["rmse", "mae", "mean_error", "rmse_ratio", "holdout_rmse"]].notna().all().all()
    assert set(alerts["rule"]) <= {PREDICTION_DRIFT, "rmse_ratio"}
    drift = alerts[alerts["rule"] == PREDICTION_DRIFT]
    quality = alerts[alerts["rule"] == "rmse_ratio"]
    breaching = rows[rows["prediction_drift"] > THRESHOLD]
    assert len(breaching) >= 1, f"no February day above {THRESHOLD}: {rows['prediction_drift'].describe()}"
    assert sorted(drift["timestamp"]) == sorted(breaching["timestamp"])
    assert (drift["threshold"] == THRESHOLD).all() and (drift["op"] == ">").all()
    expected = expected_quality_breaches(backfill)
    assert expected, f"no run of 2 February days with rmse_ratio > {QUALITY_THRESHOLD}: {rows['rmse_ratio']}"
    assert sorted(quality["timestamp"]) == expected
    assert (quality["threshold"] == QUALITY_THRESHOLD).all() and (quality["for_days"] == 2).all()
    assert set(alerts["status"]) == {"sent"}  # written to the outbox
    assert len(backfill["outbox"]) == 1  # one email for all of them
    assert len(email_lines(backfill)) == len(alerts)
    assert model_values(backfill) == [SPEC.name]
    report_figure(
        f"February 2022, v1: prediction drift {rows['prediction_drift'].min():.3f}.."
        f"{rows['prediction_drift'].max():.3f}"
        f"; {len(drift)} day(s) above {THRESHOLD}: "
        + ", ".join(f"{t:%m-%d} {v:.3f}" for t, v in zip(drift["timestamp"], drift["value"], strict=True))
    )
    report_figure(
        f"February 2022, v1 (holdout RMSE {rows['holdout_rmse'].iloc[0]:.2f} min): daily RMSE "
        f"{rows['rmse'].min():.2f}..{rows['rmse'].max():.2f} min, rmse_ratio {rows['rmse_ratio'].min():.3f}.."
        f"{rows['rmse_ratio'].max():.3f}, mean error {rows['mean_error'].min():+.2f}.."
        f"{rows['mean_error'].max():+.2f}"
        f" min; rmse_ratio > {QUALITY_THRESHOLD} for 2 days breached on "
        + ", ".join(f"{t:%m-%d} {v:.3f}" for t, v in zip(quality["timestamp"], quality["value"], strict=True))
    )


@pytest.mark.postgres
@pytest.mark.parametrize("qid", [q[0] for q in queries()])
def test_every_query_returns_what_its_panel_needs(backfill, qid):
    (_, _dashboard, kind, title, target) = next(q for q in queries() if q[0] == qid)
    (model,) = model_values(backfill)
    frame = run_as_grafana(backfill, grafana_sql(target["rawSql"], {"model": model}, *FEBRUARY))
    assert len(frame) >= 1, f"{kind} {title!r} returns no rows for February 2022"
    rows, alerts = backfill["rows"], backfill["alerts"]
    (v1,) = backfill["timeline"]
    if kind == "annotation":
        assert {"time", "text", "tags"} <= set(frame.columns)
        assert frame["text"].notna().all()
    elif target["format"] == "time_series":
        assert frame.columns[0] == "time"
        times = pd.to_datetime(frame["time"])
        assert times.is_monotonic_increasing
        assert times.min() >= pd.Timestamp("2022-02-01") and times.max() <= pd.Timestamp("2022-03-01")
        assert len(frame.columns) >= 2
    expected = {
        "Prediction drift vs threshold": lambda f: (
            list(f.columns) == ["time", "prediction drift", "threshold"]
            and f["prediction drift"].tolist() == rows["prediction_drift"].tolist()
            and (f["threshold"] == THRESHOLD).all()
        ),
        "Latest prediction drift": lambda f: (
            f["prediction drift"].iloc[-1] == rows["prediction_drift"].iloc[-1]
        ),
        "Days past the drift threshold": lambda f: (
            f.iloc[0].to_dict()
            == {"days past threshold": (alerts["rule"] == PREDICTION_DRIFT).sum(), "days monitored": 28}
        ),
        "Alerts emailed": lambda f: f.iloc[0].to_dict() == {"sent": len(alerts), "pending": 0},
        "Model version in effect": lambda f: f["model version"].iloc[-1] == "v1",
        "Drifted columns": lambda f: f["drifted columns"].tolist() == rows["num_drifted_columns"].tolist(),
        "Share of missing values": lambda f: len(f) == 28,
        "Rows per day": lambda f: (
            f["trips"].sum() == rows["n_rows"].sum() and (f["scored"] <= f["trips"]).all()
        ),
        "Model version per day": lambda f: set(f["model version"]) == {"v1"},
        "Model timeline": lambda f: (
            f["version"].tolist() == ["v1"] and f["effective from"].tolist() == [date(2022, 2, 1)]
        ),
        "Alerts": lambda f: (
            len(f) == len(alerts)
            and sorted(zip(f["day"], f["rule"], f["value"], strict=True))
            == sorted(zip(alerts["timestamp"], alerts["rule"], alerts["value"], strict=True))
            and set(f["condition"])
            == {f"prediction_drift > {THRESHOLD:.2f}", f"rmse_ratio > {QUALITY_THRESHOLD:.2f}"}
            and set(f["retrain"]) == {"yes"}
            and set(f["status"]) == {"sent"}
        ),
        "Model promotions": lambda f: f["text"].iloc[0].startswith("v1 in effect"),
        "Alerts (annotation)": lambda f: (
            len(f) == len(alerts)
            and f["text"].str.startswith(f"Threshold breach (>{THRESHOLD:.2f}): ").sum()
            == len(alerts) - len(expected_quality_breaches(backfill))
            and f["text"].str.startswith(f"Threshold breach rmse_ratio (>{QUALITY_THRESHOLD:.2f}): ").sum()
            == len(expected_quality_breaches(backfill))
            and f["tags"].str.startswith("alert,").all()
        ),
        # one region per incident, from its first breach day to the end of its last day (or of
        # the day it resolved), its state and worst value in the text
        "Incidents": lambda f: (
            len(f) == len(backfill["incidents"]) >= 1
            and sorted(pd.to_datetime(f["time"]).dt.date) == sorted(backfill["incidents"]["opened_day"])
            and (pd.to_datetime(f["timeEnd"]) > pd.to_datetime(f["time"])).all()
            and f["text"]
            .str.match(r"Incident #\d+ \[(FIRING|RESOLVED)\] (prediction_drift|rmse_ratio) > ")
            .all()
            and f["tags"].str.startswith("incident,").all()
        ),
        "RMSE vs holdout RMSE": lambda f: (
            list(f.columns) == ["time", "RMSE", "MAE", "holdout RMSE"]
            and f["RMSE"].tolist() == rows["rmse"].tolist()
            and f["MAE"].tolist() == rows["mae"].tolist()
            and f["holdout RMSE"].tolist() == [v1["holdout_rmse"]] * 28
            and (f["MAE"] <= f["RMSE"]).all()
        ),
        "Bias (mean error)": lambda f: (
            list(f.columns) == ["time", "mean error"]
            and f["mean error"].tolist() == rows["mean_error"].tolist()
        ),
        "RMSE ratio vs threshold": lambda f: (
            list(f.columns) == ["time", "rmse ratio"]
            and f["rmse ratio"].tolist() == rows["rmse_ratio"].tolist()
            and (f["rmse ratio"] - rows["rmse"] / v1["holdout_rmse"]).abs().max() < 1e-12
        ),
        "RMSE by drop-off borough": lambda f: (
            list(f.columns) == ["time", "metric", "value"]
            and {"Bronx", "Brooklyn", "Manhattan", "Queens"} <= set(f["metric"])
            and (f["value"] > 0).all()
        ),
    }
    check = expected.get(f"{title} (annotation)" if kind == "annotation" and title == "Alerts" else title)
    assert check is not None, f"no expectation written for {kind} {title!r}"
    assert check(frame), f"{kind} {title!r} returned:\n{frame}"


@pytest.mark.postgres
def test_the_alert_annotations_read_as_the_email_lines(backfill):
    """Each alert annotation is the email's line for its breach, then the alert's status."""
    (annotation,) = [
        a for a in DASHBOARDS["mlops-monitoring.json"]["annotations"]["list"] if a["name"] == "Alerts"
    ]
    (model,) = model_values(backfill)
    frame = run_as_grafana(backfill, grafana_sql(annotation["target"]["rawSql"], {"model": model}, *FEBRUARY))
    texts = frame["text"].tolist()
    assert all(text.endswith(" (sent)") for text in texts), texts
    lines = [text.removesuffix(" (sent)") for text in texts]
    assert sorted(lines) == sorted(email_lines(backfill))
    alerts = backfill["alerts"]
    assert sorted(lines) == sorted(
        breach_line(a["threshold"], a["timestamp"], a["value"], a["metric"], a["op"])
        for _, a in alerts.iterrows()
    )
    assert sorted(frame["tags"]) == sorted(f"alert,{rule},sent" for rule in alerts["rule"])


def test_the_rmse_ratio_threshold_line_is_the_default_spec_rule():
    """Grafana cannot read the spec: the panel's dashed line copies the default spec's
    rmse_ratio rule, and must change with it."""
    (panel,) = [p for _, p in panels() if p["title"] == "RMSE ratio vs threshold"]
    defaults = panel["fieldConfig"]["defaults"]
    steps = [s["value"] for s in defaults["thresholds"]["steps"]]
    assert steps == [None, quality_rule(SPEC).threshold]
    assert defaults["custom"]["thresholdsStyle"]["mode"] in ("line", "dashed", "line+area", "dashed+area")
    assert f"{quality_rule(SPEC).threshold:g}" in panel["description"]
    assert f"{quality_rule(SPEC).min_rows}" in panel["description"]
    # the line stays in view when every day is below it
    assert defaults["custom"]["axisSoftMax"] > quality_rule(SPEC).threshold
    # the RMSE panel's reference line is the holdout RMSE series, dashed; the bias panel has its zero line
    (rmse,) = [p for _, p in panels() if p["title"] == "RMSE vs holdout RMSE"]
    (holdout,) = [o for o in rmse["fieldConfig"]["overrides"] if o["matcher"]["options"] == "holdout RMSE"]
    assert {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}} in holdout["properties"]
    (bias,) = [p for _, p in panels() if p["title"] == "Bias (mean error)"]
    assert [s["value"] for s in bias["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [None, 0]


def test_the_drift_stat_judges_p_values_below_the_threshold():
    """'Days past the drift threshold' compares in the drift method's direction: its list of
    p-value methods is Evidently's (mlops_core.specs.DRIFT_METHODS)."""
    (panel,) = [p for _, p in panels() if p["title"] == "Days past the drift threshold"]
    sql = panel["targets"][0]["rawSql"]
    (listed,) = re.findall(r"drift_method IN \(([^)]*)\)", sql)
    assert {m.strip().strip("'") for m in listed.split(",")} == {
        m for m, kind in DRIFT_METHODS.items() if kind == "p_value"
    }


def test_no_query_reads_the_old_drift_alerts_table():
    for qid, _, _, _, target in queries():
        assert not re.search(r"\bdrift_alerts\b", target["rawSql"]), qid


@pytest.mark.postgres
def test_the_timeline_table_shows_the_version_in_effect_before_the_range(backfill):
    """A range that starts after the promotion still shows the model in effect during it."""
    (panel,) = [p for _, p in panels() if p["title"] == "Model timeline"]
    (model,) = model_values(backfill)
    mid_month = (datetime(2022, 2, 10, tzinfo=UTC), datetime(2022, 2, 20, tzinfo=UTC))
    frame = run_as_grafana(backfill, grafana_sql(panel["targets"][0]["rawSql"], {"model": model}, *mid_month))
    assert frame["version"].tolist() == ["v1"]
    # ...and a range with no data is empty, not an error
    empty = (datetime(2021, 6, 1, tzinfo=UTC), datetime(2021, 7, 1, tzinfo=UTC))
    for _, _, kind, title, target in queries():
        if title != "Model timeline":
            frame = run_as_grafana(backfill, grafana_sql(target["rawSql"], {"model": model}, *empty))
            if target["format"] == "time_series" or kind == "annotation":
                assert frame.empty, f"{kind} {title!r} has rows outside its time range"
