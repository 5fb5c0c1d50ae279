"""``POST /predict`` -> the model's predictions, nothing else."""

import json
import os
from pathlib import Path

import pandas as pd
from django.http import HttpResponse
from django.urls import path

from mlops_core.bundle import ModelBundle

BUNDLE = ModelBundle.load(Path(os.environ["FLOOR_MODEL_DIR"]))


def predict(request):
    data = json.loads(request.body)
    single = isinstance(data, dict)
    predictions = BUNDLE.predict(pd.DataFrame([data] if single else data))
    out = float(predictions[0]) if single else predictions.tolist()
    return HttpResponse(json.dumps({"duration_minutes": out}), content_type="application/json")


urlpatterns = [path("predict", predict)]
