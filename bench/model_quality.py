"""The default model's quality on the real months, with and without its distance bound.

    .venv/bin/python bench/model_quality.py [--months 2021-01,2022-01]

For each month: the default spec's model (trip_distance bounded to [0, 80] miles) and, as the
baseline measured in the same run, the same spec without that filter (what it was before the
hardening issue), both trained exactly as the ``duration_model`` asset trains them (first half
of the month by pickup time; the second half is the holdout). Prints holdout RMSE/MAE, the
mean predictor's RMSE on the same holdout, the distance coefficient (minutes per mile) and
predictions for one zone pair at 1, 10 and 80 miles. Data: ``MLOPS_TEST_DATA_DIR`` or
``../shared/data/nyc-tlc`` beside the repository.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from datetime import datetime
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def evaluate(spec, settings, month: str) -> dict:
    from mlops_assets import resources as R
    from mlops_assets.training.model import train_on_month

    start = datetime.fromisoformat(month + "-01")
    end = (pd.Timestamp(start) + pd.offsets.MonthBegin(1)).to_pydatetime()
    frame = R.trip_source(settings).trips_for(spec, start, end)[0]
    bundle, _ = train_on_month(spec, frame)
    dv, model = bundle.pipeline.named_steps["dv"], bundle.pipeline.named_steps["model"]
    trips = pd.DataFrame(
        {
            "PULocationID": pd.array([74] * 3, dtype="Int64"),
            "DOLocationID": pd.array([168] * 3, dtype="Int64"),
            "trip_distance": [1.0, 10.0, 80.0],
        }
    )
    info = bundle.info
    return {
        "rows": info.n_train + info.n_holdout,
        "rmse": info.holdout.rmse,
        "mae": info.holdout.mae,
        "mean": info.mean_baseline.rmse,
        "per_mile": float(model.coef_[dv.feature_names_.index("trip_distance")]),
        "at": bundle.predict(trips).tolist(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--months", default="2021-01,2022-01")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from mlops_assets.settings import Settings
    from mlops_core.specs import load_specs

    data_dir = Path(os.environ.get("MLOPS_TEST_DATA_DIR") or REPO.parent / "shared" / "data" / "nyc-tlc")
    spec = next(s for s in load_specs() if s.name == "green_taxi_duration")
    unbounded = spec.model_copy(
        update={"filters": {k: v for k, v in spec.filters.items() if k != "trip_distance"}}
    )
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.for_home(tmp, trip_data_dir=data_dir)
        print(
            "| month | distance filter | trips | holdout RMSE | MAE | mean predictor | RMSE / mean "
            "| min per mile | 74→168 at 1 / 10 / 80 mi |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---|")
        for month in args.months.split(","):
            for label, s in (("none (before)", unbounded), ("[0, 80] miles", spec)):
                r = evaluate(s, settings, month)
                at = " / ".join(f"{v:.1f}" for v in r["at"])
                scores = f"{r['rmse']:.3f} | {r['mae']:.3f} | {r['mean']:.3f} | {r['rmse'] / r['mean']:.2f}"
                print(
                    f"| {month} | {label} | {r['rows']:,} | {scores} | {r['per_mile']:.3f} | {at} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
