"""Daily drift and model-quality metrics with Evidently 0.7, and the HTML report of each day.
(The figures of the daily metrics row, ``mlops_core.daily_metrics.DailyMetrics``.)

Per day, against the reference data of the model in effect that day (its holdout features,
actual durations and predictions), in one Evidently report:

* ``prediction_drift``: ``ValueDrift`` on the prediction column with the spec's pinned
  ``drift_method`` (default ``wasserstein``: the Wasserstein distance normed by the
  reference's standard deviation). Pinned because Evidently's automatic choice depends on the
  reference's size (a K-S p-value up to 1,000 rows, a distance above), which would silently
  turn "large means drift" into "small means drift";
* ``num_drifted_columns`` and ``drifted_columns``: one ``ValueDrift`` per feature column with
  Evidently's own choice of method and threshold for its type and size, and Evidently's own
  test of it (drifted when it fails). That is what ``DriftedColumnsCount`` counts (the tests
  compare the two), and unlike it, it says which columns, with their scores, in the report;
* ``share_missing_values``: ``DatasetMissingValueCount`` share over the model's feature
  columns (not over all TLC columns: ``ehail_fee`` is always null);
* ``rmse``, ``mae``, ``mean_error``: Evidently's regression metrics (``RMSE``, ``MAE``,
  ``MeanError``) on the day's scored trips, the data definition's regression target being
  the actual ``duration`` (known when the day ends) and its prediction the model's
  ``prediction``. ``mean_error`` is prediction minus actual, in minutes (the bias: positive
  when the model predicts too long). Rows the model could not score (NaN prediction) are left
  out by Evidently, as they are out of the RMSE.

Given the alert rule's threshold, the prediction's ``ValueDrift`` is tested against it too, so
the report's "drift detected" and its test agree with the alert; no other metric carries a
test (Evidently's defaults would compare RMSE with the reference's, which is not our rule).

A day with no trips has no metrics (None), never a made-up 0.0; a day with trips but no
scored row has drift-over-features metrics and no prediction or quality metrics.
"""

from __future__ import annotations

import math
import shutil
import warnings
from html import escape
from pathlib import Path

import pandas as pd

from mlops_core.bundle import PREDICTION
from mlops_core.daily_metrics import ColumnDrift, DailyMetrics
from mlops_core.features import Features
from mlops_core.schema import DURATION
from mlops_core.specs import DEFAULT_DRIFT_METHOD


def data_definition(features: Features):
    from evidently import DataDefinition, Regression

    return DataDefinition(
        numerical_columns=[*features.numerical, PREDICTION, DURATION],
        categorical_columns=list(features.categorical),
        regression=[Regression(target=DURATION, prediction=PREDICTION)],
    )


def monitoring_frame(df: pd.DataFrame, features: Features) -> pd.DataFrame:
    """The columns Evidently looks at: the model's features, its prediction, the actual duration."""
    return df[[*features.categorical, *features.numerical, PREDICTION, DURATION]].reset_index(drop=True)


def build_report(
    features: Features,
    with_prediction: bool = True,
    method: str = DEFAULT_DRIFT_METHOD,
    threshold: float | None = None,
):
    """The day's report. Tests: each feature's ``ValueDrift`` (Evidently's default test, which
    decides whether the column drifted) and, given ``threshold``, the prediction's against it;
    ``tests=[]`` keeps Evidently's default tests off every other metric."""
    from evidently import Report
    from evidently.metrics import (
        MAE,
        RMSE,
        DatasetMissingValueCount,
        MeanError,
        ValueDrift,
    )

    columns = [*features.categorical, *features.numerical]
    metrics = [
        *(ValueDrift(column=column) for column in columns),
        DatasetMissingValueCount(columns=columns, tests=[], share_tests=[]),
    ]
    if with_prediction:
        # MAE would draw the same error distribution as RMSE a second time in the report.
        prediction = (
            ValueDrift(column=PREDICTION, method=method, tests=[])
            if threshold is None
            else ValueDrift(column=PREDICTION, method=method, threshold=threshold)
        )
        metrics = [
            prediction,
            RMSE(tests=[]),
            MAE(error_distr=False, mean_tests=[], std_tests=[]),
            MeanError(mean_tests=[], std_tests=[]),
            *metrics,
        ]
    return Report(metrics, include_tests=True)


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _value(result: dict, metric_name_prefix: str):
    for metric in result["metrics"]:
        if metric["metric_name"].startswith(metric_name_prefix):
            return metric["value"]
    raise KeyError(metric_name_prefix)


def _drift_score(result: dict, column: str) -> float:
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":ValueDrift") and config["column"] == column:
            return float(metric["value"])
    raise KeyError(f"ValueDrift({column})")


def feature_drift(result: dict, columns: list[str]) -> tuple[ColumnDrift, ...]:
    """Each feature column's ``ValueDrift`` and the outcome of Evidently's test of it, from a
    snapshot's ``dict()``, in ``columns``' order."""
    tests = {}
    for test in result["tests"]:
        params = test["metric_config"]["params"]
        if params["type"].endswith(":ValueDrift") and params["column"] in columns:
            tests[params["column"]] = (test["status"], params)
    found = []
    for column in columns:
        if column not in tests:
            raise KeyError(f"Evidently reported no drift test for feature column {column!r}")
        status, params = tests[column]
        found.append(
            ColumnDrift(
                column=column,
                score=_drift_score(result, column),
                method=str(params["method"]),
                threshold=float(params["threshold"]),
                drifted=status == "FAIL",  # a str enum: FAIL when Evidently finds the drift
            )
        )
    return tuple(found)


def reference_dataset(reference: pd.DataFrame, features: Features):
    """The reference as an Evidently ``Dataset``: build it once per model, reuse it every day
    (Evidently keeps what it computed about a dataset, so reuse saves a third of the time)."""
    from evidently import Dataset

    return Dataset.from_pandas(
        monitoring_frame(reference, features), data_definition=data_definition(features)
    )


def compute(
    current: pd.DataFrame,
    reference,
    features: Features,
    method: str = DEFAULT_DRIFT_METHOD,
    threshold: float | None = None,
):
    """Metrics of one day (``current``) against ``reference``; returns (metrics, snapshot):
    a ``DailyMetrics`` with the figures Evidently computes (the caller adds which model and
    day, ``rmse_ratio`` and the report) and Evidently's snapshot (None without trips).

    ``current`` holds the feature columns, ``prediction`` (NaN where a row is not scored) and
    the actual ``duration``; ``reference`` is the same for the model's holdout, as a frame or
    a ``reference_dataset``. ``method`` is the drift method of ``prediction_drift`` and
    ``threshold``, when given, the alert rule's threshold the report tests it against.
    """
    from evidently import Dataset

    if isinstance(reference, pd.DataFrame):
        reference = reference_dataset(reference, features)
    n_rows = len(current)
    n_scored = int(current[PREDICTION].notna().sum()) if n_rows else 0
    if n_rows == 0:
        return DailyMetrics(n_rows=0, n_scored=0, drift_method=method), None
    definition = data_definition(features)
    with_prediction = n_scored > 0
    report = build_report(features, with_prediction=with_prediction, method=method, threshold=threshold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Evidently's legacy path warns about pandas idioms
        snapshot = report.run(
            Dataset.from_pandas(monitoring_frame(current, features), data_definition=definition),
            reference,
        )
    result = snapshot.dict()
    drift_columns = feature_drift(result, [*features.categorical, *features.numerical])
    missing = _value(result, "DatasetMissingValueCount")
    metrics = DailyMetrics(
        n_rows=n_rows,
        n_scored=n_scored,
        prediction_drift=_finite(_drift_score(result, PREDICTION)) if with_prediction else None,
        num_drifted_columns=sum(c.drifted for c in drift_columns),
        # in the model's column order, comma-separated ("" for none)
        drifted_columns=", ".join(c.column for c in drift_columns if c.drifted),
        share_missing_values=float(missing["share"]),
        rmse=_finite(_value(result, "RMSE")) if with_prediction else None,
        mae=_finite(_value(result, "MAE")["mean"]) if with_prediction else None,
        mean_error=_finite(_value(result, "MeanError")["mean"]) if with_prediction else None,
        drift_method=method,
        feature_drift=drift_columns,
    )
    return metrics, snapshot


def save_html(snapshot, path: Path, title: str | None = None, appendix: str | None = None) -> Path:
    """Write the report as HTML next to one shared copy of Evidently's JS library.

    Evidently's ``save_html`` embeds its 3.6 MB JS bundle in every file; a month of daily
    reports would be 100+ MB. Here each report is small and loads ``js/evidently.<v>.js``
    from the reports folder (copied once). Falls back to Evidently's own single-file HTML
    if its rendering internals ever change.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        html = _compact_html(snapshot, path.parent, title or "")
    except (ImportError, AttributeError, TypeError):
        html = snapshot.get_html_str(as_iframe=False)
    if title:  # the browser tab and the bookmark name say which day and model this is
        html = html.replace("<head>", f"<head>\n    <title>{escape(title, quote=False)}</title>", 1)
    if appendix:  # a section of our own (the day's segments) after Evidently's
        html = html.replace("</body>", appendix + "\n</body>", 1) if "</body>" in html else html + appendix
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path


def _compact_html(snapshot, folder: Path, title: str = "") -> str:
    import uuid

    import evidently
    from evidently.core.metric_types import DetailsInfo
    from evidently.legacy.model.dashboard import DashboardInfo
    from evidently.legacy.model.widget import AdditionalGraphInfo, BaseWidgetInfo
    from evidently.legacy.renderers.html_widgets import group_widget
    from evidently.legacy.utils.dashboard import STATIC_PATH, TemplateParams, file_html_template

    js_dir = folder / "js"
    lib = js_dir / f"evidently.{evidently.__version__}.js"
    font = js_dir / "material-ui-icons.woff2"
    if not lib.is_file() or not font.is_file():
        js_dir.mkdir(parents=True, exist_ok=True)
        for src, dst in (
            (Path(STATIC_PATH) / "index.js", lib),
            (Path(STATIC_PATH) / "material-ui-icons.woff2", font),
        ):
            part = dst.with_name(dst.name + f".{uuid.uuid4().hex}.part")
            shutil.copyfile(src, part)
            part.replace(dst)

    widgets = [group_widget(title=title, widgets=snapshot._widgets), *snapshot._tests_widgets]
    items = []
    for info_item in widgets:
        for graph in info_item.get_additional_graphs():
            if isinstance(graph, AdditionalGraphInfo):
                items.append(DetailsInfo(title="", info=graph.params, id=graph.id))
            else:
                items.append(DetailsInfo(title="", info=graph, id=graph.id))
    additional = {
        f"{item.id}": item.info.dict() if isinstance(item.info, BaseWidgetInfo) else item.info
        for item in items
    }
    params = TemplateParams(
        dashboard_id="metric_" + uuid.uuid4().hex,
        dashboard_info=DashboardInfo(name="Report", widgets=widgets),
        additional_graphs=additional,
        embed_font=False,
        embed_lib=False,
        font_file=f"js/{font.name}",
        include_js_files=[f"js/{lib.name}"],
    )
    return file_html_template(params)
