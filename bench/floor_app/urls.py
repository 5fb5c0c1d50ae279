"""``POST /predict`` -> the model's predictions, nothing else: the bare path a careful Django
view would take, with no pandas for one trip.

* One trip: ``json.loads``, one dict of the model's features (categories as strings, numbers
  as floats: what ``mlops_core.features.to_dicts`` makes of a trips-frame row) through the
  skops ``DictVectorizer`` + ``LinearRegression`` pipeline, clipped to the trained target
  range (``np.clip``), ``json.dumps``.
* A batch: the vectorised path a careful floor would use for many rows: one column per
  feature, ``mlops_core.features.design_matrix`` and the regressor, clipped the same way.

No validation, no logging, no middleware. The answer carries the same keys as the service's.
"""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from django.http import HttpResponse
from django.urls import path

from mlops_core.bundle import ModelBundle
from mlops_core.features import design_matrix

BUNDLE = ModelBundle.load(Path(os.environ["FLOOR_MODEL_DIR"]))
PIPELINE = BUNDLE.pipeline
(_, VECTORIZER), (_, REGRESSOR) = PIPELINE.steps
FEATURES = BUNDLE.features
CATEGORICAL, NUMERICAL = FEATURES.categorical, FEATURES.numerical
LOW, HIGH = BUNDLE.info.target_range
NAME, VERSION = BUNDLE.info.model_name, str(BUNDLE.info.version)


def predict(request):
    data = json.loads(request.body)
    answer = {"model": NAME, "model_version": VERSION}
    if isinstance(data, dict):
        row = {name: str(data[name]) for name in CATEGORICAL}
        row.update({name: float(data[name]) for name in NUMERICAL})
        answer["duration_minutes"] = float(np.clip(PIPELINE.predict([row]), LOW, HIGH)[0])
    else:
        frame = pd.DataFrame({name: [trip[name] for trip in data] for name in (*CATEGORICAL, *NUMERICAL)})
        predictions = REGRESSOR.predict(design_matrix(VECTORIZER, frame, FEATURES))
        answer["count"] = len(data)
        answer["duration_minutes"] = np.clip(predictions, LOW, HIGH).tolist()
    return HttpResponse(json.dumps(answer), content_type="application/json")


urlpatterns = [path("predict", predict)]
