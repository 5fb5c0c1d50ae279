"""The JSON API: ``/predict``, ``/health``, ``/ready``, ``/model``, ``/reload`` (+ OpenAPI).

Every answer is JSON, errors included: ``{"detail": "<what is wrong, naming the field>"}``
(plus ``errors``, one entry per problem, for a 422). ``POST /predict`` takes only
``Content-Type: application/json`` (415 otherwise), reads the current model once and uses
that object for the whole request (see ``runtime.py``); its body rules come from the model's
features and trained domain (``inputs.py``), and so does the ``Trip`` schema in
``/openapi.json``. ``/model`` tells what is served, never where the registry is. The hot
path answers with a prebuilt ``HttpResponse``, so ninja does not re-validate the output;
the response schemas below are for the document (and the tests check the answers against
them).
"""

from __future__ import annotations

import hmac
import json
import logging
from pathlib import PurePath

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, AuthorizationError
from ninja.responses import Status
from ninja.security import HttpBearer

from mlops_core.specs import SpecError, load_specs
from serving import config, runtime
from serving.inputs import BadInput, TripInputs, check_finite
from serving.runtime import LoadedModel
from serving.source import ModelSource, ModelUnavailable

log = logging.getLogger("serving")
JSON = "application/json; charset=utf-8"
JSON_MEDIA_TYPE = "application/json"


# --- response documents ---------------------------------------------------------------------
class ErrorOut(Schema):
    detail: str


class PredictionOut(Schema):
    model: str
    model_version: str
    duration_minutes: float


class BatchPredictionOut(Schema):
    model: str
    model_version: str
    count: int
    duration_minutes: list[float]


class HealthOut(Schema):
    status: str


class ReadyOut(Schema):
    ready: bool
    model: str
    model_version: str


class NotReadyOut(Schema):
    ready: bool
    detail: str


class ScoresOut(Schema):
    rmse: float | None
    mae: float | None
    n: int


class WindowOut(Schema):
    start: str
    end: str
    holdout_start: str


class FeaturesOut(Schema):
    categorical: list[str]
    numerical: list[str]
    missing: str


class ModelOut(Schema):
    name: str
    version: str
    alias: str | None
    source: str  # models:/<name>@<alias> (or /<version>), or file:<artifact>: no location
    algorithm: str
    target: str
    features: FeaturesOut
    domain: dict[str, list[float | None]]  # numerical feature -> [min, max] trained on (None: open)
    training_window: WindowOut
    n_train: int
    holdout_metrics: ScoresOut
    mean_baseline_metrics: ScoresOut
    fingerprint: str
    trained_at: str
    loaded_at: str


class WorkersOut(Schema):
    total: int
    updated: int
    lagging: list[int]
    failed: list[dict]


class ReloadOut(Schema):
    model: str
    alias: str | None
    old_version: str | None
    new_version: str
    changed: bool
    workers: WorkersOut


# --- the API --------------------------------------------------------------------------------
class ServingAPI(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        """The document, with the ``Trip`` schema of the model loaded now."""
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["Trip"] = _trip_schema(runtime.SERVICE.current)
        components.setdefault("securitySchemes", {})["ReloadToken"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "the value of SERVING_RELOAD_TOKEN",
        }
        operation = schema["paths"]["/reload"]["post"]
        operation["security"] = [{"ReloadToken": []}]
        trip = {"$ref": "#/components/schemas/Trip"}
        body = {
            "oneOf": [
                trip,
                {"type": "array", "items": trip, "maxItems": config.max_batch_rows()},
            ]
        }
        operation = schema["paths"]["/predict"]["post"]
        media_type: dict = {"schema": body}
        if "example" in components["schemas"]["Trip"]:  # what Swagger UI's "Try it out" sends
            media_type["example"] = components["schemas"]["Trip"]["example"]
        operation["requestBody"] = {"required": True, "content": {JSON_MEDIA_TYPE: media_type}}
        return schema


api = ServingAPI(
    title="Trip duration prediction service",
    version="1",
    description=(
        "Predicts NYC taxi trip durations (minutes) with the model named by MODEL_URI "
        "(default: the `champion` of `green_taxi_duration` in the MLflow registry). "
        "POST one trip as an object or up to SERVING_MAX_BATCH_ROWS trips as an array."
    ),
)


def _json(status: int, payload: dict, headers: dict | None = None) -> HttpResponse:
    response = HttpResponse(json.dumps(payload), status=status, content_type=JSON)
    for key, value in (headers or {}).items():
        response[key] = value
    return response


def _no_model() -> HttpResponse:
    return _json(503, {"detail": f"no model loaded: {runtime.SERVICE.problem}"}, {"Retry-After": "5"})


def _inputs(loaded: LoadedModel) -> TripInputs:
    """The request rules of ``loaded``, its numerical features bounded to its trained domain
    (``ModelInfo.domain``; older bundles have none)."""
    return loaded.inputs.for_domain(loaded.bundle.info.domain)


def _trip_schema(loaded: LoadedModel | None) -> dict:
    if loaded is not None:
        return _inputs(loaded).trip_schema()
    # No model yet: document the features of the spec the model will come from, if known
    # (bounded like the model trained from it will be: by the spec's filters).
    try:
        name = ModelSource.parse(config.model_uri()).name
        spec = next((s for s in load_specs(config.specs_dir()) if s.name == name), None)
    except (ModelUnavailable, SpecError, OSError):
        spec = None
    if spec is None:
        return {"type": "object", "description": "the loaded model's feature fields"}
    domain = {
        c: [spec.filters[c].min, spec.filters[c].max] for c in spec.features.numerical if c in spec.filters
    }
    schema = TripInputs(spec.features, config.max_batch_rows(), domain).trip_schema()
    schema["description"] += f" (from spec {spec.name}: no model is loaded yet)"
    return schema


def _content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 1  # not a number: not an empty body either


def _check_content_type(request: HttpRequest) -> None:
    """415 unless the body is declared JSON (UTF-8, the only encoding JSON has).

    A missing Content-Type is refused too: browsers send a cross-site POST without asking
    first (no CORS preflight) only with no Content-Type or a form/text one, so requiring
    application/json keeps web pages from making visitors' browsers post here; and clients
    that mean JSON say so (curl -d alone sends application/x-www-form-urlencoded).
    """
    given = request.META.get("CONTENT_TYPE", "").strip()
    media = (request.content_type or "").strip().lower()
    charset = (request.content_params or {}).get("charset", "utf-8").strip().lower()
    if media == JSON_MEDIA_TYPE and charset in ("utf-8", "utf8"):
        return
    got = repr(given[:100]) if given else "no Content-Type"
    if media == JSON_MEDIA_TYPE:
        got = f"charset {charset[:40]!r}; JSON is UTF-8"
    raise BadInput(
        415,
        f"send the trips as JSON with the header 'Content-Type: {JSON_MEDIA_TYPE}' "
        f"(charset utf-8 optional); got {got}",
    )


@api.exception_handler(BadInput)
def _bad_input(request: HttpRequest, exc: BadInput) -> HttpResponse:
    return _json(exc.status, exc.body())


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return _json(
        413,
        {
            "detail": f"the request body is larger than {limit} bytes (SERVING_MAX_BODY_BYTES); "
            f"send at most {config.max_batch_rows()} trips per request"
        },
    )


_ERRORS = {400: ErrorOut, 411: ErrorOut, 413: ErrorOut, 415: ErrorOut, 422: ErrorOut, 503: ErrorOut}


@api.post(
    "/predict",
    response={200: PredictionOut | BatchPredictionOut, **_ERRORS},
    summary="Predict trip durations (minutes)",
    description=(
        "Body (`Content-Type: application/json`): one trip (object) -> `duration_minutes` is "
        "a number; an array of trips -> `duration_minutes` is a list in the same order. "
        "`model_version` (also in the `X-Model-Version` header) names the model that made the "
        "prediction. A numerical feature outside the range the model was trained on (the "
        "`Trip` schema's minimum/maximum) is refused with 422."
    ),
)
def predict(request: HttpRequest):
    # Django reads a WSGI body only up to its Content-Length: refuse a chunked one unread.
    # (request.META, not request.headers: that builds a dict of every header, ~10 us a request)
    chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
    if chunked and not request.META.get("CONTENT_LENGTH"):
        raise BadInput(411, "send the body with a Content-Length (chunked bodies are not read)")
    if _content_length(request):  # an empty body is a 400 below, whatever its (absent) type
        _check_content_type(request)
    loaded = runtime.SERVICE.current  # this request's model, whatever a reload does meanwhile
    if loaded is None:
        return _no_model()
    inputs = _inputs(loaded)
    trips, single = inputs.parse(request.body)
    payload: dict = {"model": loaded.name, "model_version": loaded.version}
    if single:  # one trip: no frame (the same dict reaches the model; see features.record_dict)
        prediction = loaded.predict_one(trips)
        check_finite(prediction)
        payload["duration_minutes"] = prediction
    else:
        predictions = loaded.predict(inputs.frame(trips))
        check_finite(predictions)
        payload["count"] = len(predictions)
        payload["duration_minutes"] = predictions.tolist()
    return _json(200, payload, {"X-Model-Version": loaded.version})


@api.get("/health", response=HealthOut, summary="The process is up")
def health(request: HttpRequest):
    return {"status": "ok"}


@api.get(
    "/ready",
    response={200: ReadyOut, 503: NotReadyOut},
    summary="A model is loaded (503 with the reason otherwise)",
)
def ready(request: HttpRequest):
    loaded = runtime.SERVICE.current
    if loaded is None:
        return Status(503, {"ready": False, "detail": f"no model loaded: {runtime.SERVICE.problem}"})
    return {"ready": True, "model": loaded.name, "model_version": loaded.version}


def _scores(scores) -> dict:
    def number(x: float) -> float | None:
        return x if x == x else None  # NaN (no rows) is null in JSON

    return {"rmse": number(scores.rmse), "mae": number(scores.mae), "n": scores.n}


def _public_source(loaded: LoadedModel) -> str:
    """Which model, not where it is: the registry's address and the bundle's folder stay out
    of a public answer (they are in the service's log)."""
    pin = loaded.pin
    if pin.kind == "registry":
        return f"models:/{pin.name}@{pin.alias}" if pin.alias else f"models:/{pin.name}/{pin.version}"
    return f"file:{PurePath(pin.artifact).name}"


@api.get("/model", response={200: ModelOut, 503: ErrorOut}, summary="The model being served")
def model(request: HttpRequest):
    loaded = runtime.SERVICE.current
    if loaded is None:
        return Status(503, {"detail": f"no model loaded: {runtime.SERVICE.problem}"})
    info = loaded.bundle.info
    return {
        "name": loaded.name,
        "version": loaded.version,
        "alias": loaded.alias,
        "source": _public_source(loaded),
        "algorithm": info.algorithm,
        "target": info.target,
        "features": {
            "categorical": list(info.features.categorical),
            "numerical": list(info.features.numerical),
            "missing": info.features.missing,
        },
        "domain": _inputs(loaded).domain,
        "training_window": {
            "start": info.window_start,
            "end": info.window_end,
            "holdout_start": info.holdout_start,
        },
        "n_train": info.n_train,
        "holdout_metrics": _scores(info.holdout),
        "mean_baseline_metrics": _scores(info.mean_baseline),
        "fingerprint": info.fingerprint,
        "trained_at": info.trained_at,
        "loaded_at": loaded.loaded_at,
    }


class ReloadToken(HttpBearer):
    """``Authorization: Bearer <SERVING_RELOAD_TOKEN>``, compared in constant time. With no
    token configured every call is refused (403), whatever it sends."""

    def __call__(self, request: HttpRequest):
        if config.reload_token() is None:
            raise AuthorizationError(
                403,
                "reload is disabled: SERVING_RELOAD_TOKEN is not set on the service "
                "(set it, or restart the service to load a new model)",
            )
        return super().__call__(request)

    def authenticate(self, request: HttpRequest, token: str):
        configured = config.reload_token()
        if configured is None:
            return None
        given = token.strip().encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, configured.encode("utf-8", "surrogateescape")) or None


@api.exception_handler(AuthorizationError)
def _forbidden(request: HttpRequest, exc: AuthorizationError) -> HttpResponse:
    return _json(exc.status_code, {"detail": exc.message})


@api.exception_handler(AuthenticationError)
def _unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _json(
        401,
        {"detail": "reload needs the header 'Authorization: Bearer <SERVING_RELOAD_TOKEN>'"},
        {"WWW-Authenticate": 'Bearer realm="reload"'},
    )


@api.post(
    "/reload",
    response={200: ReloadOut, 401: ErrorOut, 403: ErrorOut, 503: ErrorOut},
    summary="Load the model MODEL_URI names now and swap it in (all workers)",
    description=(
        "Needs `Authorization: Bearer <SERVING_RELOAD_TOKEN>`; refused (403) when the service "
        "has no token configured. Re-resolves the alias, loads the model completely, then swaps "
        "it in; requests in flight finish on the model they started with. If the new model "
        "cannot be loaded, the old one keeps serving and the answer is 503 with the reason."
    ),
    auth=ReloadToken(),
)
def reload(request: HttpRequest):
    before = runtime.SERVICE.current
    try:
        result = runtime.SERVICE.reload()
    except ModelUnavailable as exc:
        serving = f"still serving version {before.version}" if before else "no model is loaded"
        log.warning("reload failed (%s): %s", serving, exc)
        return _json(503, {"detail": f"reload failed, {serving}: {exc}"})
    log.info(
        "reload: %s %s -> %s (workers %s)",
        result.new.name,
        result.old.version if result.old else None,
        result.new.version,
        result.workers,
    )
    return _json(
        200,
        {
            "model": result.new.name,
            "alias": result.new.alias,
            "old_version": result.old.version if result.old else None,
            "new_version": result.new.version,
            "changed": result.changed,
            "workers": result.workers,
        },
    )
