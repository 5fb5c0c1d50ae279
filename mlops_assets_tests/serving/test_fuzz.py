"""Schemathesis fuzzes the OpenAPI document against the real gunicorn: no 5xx, answers as documented.

The shared ``live`` server (gunicorn, two workers, a model trained on the real 2022-01
month from a real MLflow store). Schemathesis 4 reads ``/openapi.json`` (whose ``Trip``
schema comes from the loaded model) and sends valid and invalid requests to every operation
(``/reload`` with the token) and runs all its default checks on each answer: no server
error, status codes, content types, headers and bodies as documented, invalid data refused,
valid data accepted. Generation is derandomized, so a run is repeatable. Nothing is faked.

(``schemathesis.pytest.from_fixture`` would be the idiomatic loader, but in schemathesis
4.32.5 it reads ``request.node._nodeid``, which pytest 9 no longer has; the documented
``as_strategy`` + Hypothesis ``@given`` route below does the same work.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from mlops_assets_tests.serving.conftest import LIVE_TOKEN

pytestmark = pytest.mark.e2e
OPERATIONS = ["POST /predict", "GET /health", "GET /ready", "GET /model", "POST /reload"]


@pytest.fixture(scope="module")
def api_schema(live):
    return schemathesis.openapi.from_url(live.url + "/openapi.json")


def test_every_operation_is_fuzzed(api_schema):
    documented = {f"{r.ok().method.upper()} {r.ok().path}" for r in api_schema.get_all_operations()}
    assert documented == set(OPERATIONS)


CASES = [
    *[(op, GenerationMode.POSITIVE) for op in OPERATIONS],
    # negative data needs inputs to break: the body of /predict, the header of /reload
    ("POST /predict", GenerationMode.NEGATIVE),
    ("POST /reload", GenerationMode.NEGATIVE),
]


@pytest.mark.parametrize(("operation", "mode"), CASES, ids=[f"{o} {m.value}" for o, m in CASES])
def test_the_documented_api_holds_up(api_schema, operation, mode):
    method, path = operation.split()
    strategy = api_schema[path][method].as_strategy(generation_mode=mode)
    headers = {"Authorization": f"Bearer {LIVE_TOKEN}"} if path == "/reload" else None

    @given(case=strategy)
    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case):
        case.call_and_validate(headers=headers, timeout=30)

    fuzz()
