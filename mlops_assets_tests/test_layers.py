"""The code's shape holds: imports point down the layers, each domain's logic stays below its
Dagster definitions, the environment is read in a few named modules, the prediction service
loads without Dagster, and benchmarks never import the tests.

Layers, bottom to top (a module may import its own layer and any layer below, never above):

0. ``mlops_core``: what training, monitoring and serving share (schema, specs, the daily
   metrics row, features, the model bundle, MLflow loading, redaction and parsing helpers);
   imports no Dagster, nothing of ``mlops_assets`` or ``serving``, and names no path into
   ``mlops_assets`` (its packaged specs are its own);
1. the code location's base: settings, constants, keys, partitions, the local Dagster
   instance's config, and ``lib/`` (code that defines nothing: the IO manager, the metrics
   DB's engine and migrations, the mailer, links, runs of days);
2. the domains' stores (``<domain>/store.py``: a table and its repository), which any domain
   may read (the history chart reads alerts; the alert sensor reads the daily rows) and which
   import only layers 0 and 1;
3. ``data``  4. ``training``  5. ``monitoring``  6. ``alerting``  7. ``ops`` (each domain's
   own modules);
8. ``resources``, ``definitions``, ``demo``.

Inside a domain, ``definitions.py`` gathers the Dagster definitions; nothing but the top
``definitions.py`` imports a domain's ``definitions``. ``serving`` (the prediction service)
may import ``mlops_core`` and itself only. ``bench`` (the benchmarks) may import the product
and itself, never the test suite; no product module imports ``bench`` or the tests. The tests
may import anything. The walk reads every ``import`` in every module (function-level ones
included, and ``importlib.import_module`` / ``__import__`` of a literal name) with ``ast``;
nothing runs.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mlops_core", "mlops_assets", "serving")
BENCH, TESTS = "bench", "mlops_assets_tests"
BASE = {"settings", "constants", "keys", "partitions", "local_instance", "lib", "__init__"}
STORE, STORE_RANK = "store", 2
DOMAINS = {"data": 3, "training": 4, "monitoring": 5, "alerting": 6, "ops": 7}
TOP = {"resources", "definitions", "demo"}
# Product modules allowed to read the environment (besides serving's gunicorn.conf.py and
# wsgi.py, and the demo): the code location's settings and the service's config.
ENV_READERS = {"mlops_assets/settings.py", "serving/config.py"}
ENV_EXEMPT = {
    "serving/gunicorn.conf.py",
    "serving/wsgi.py",
    # make demo: a process entry point (DEMO_MONTHS, DAGSTER_HOME, MLflow's log level)
    "mlops_assets/demo/__main__.py",
    "mlops_assets/demo/runner.py",
    "mlops_assets/demo/story.py",
}


def modules(packages=(*PACKAGES, BENCH)) -> dict[str, Path]:
    """The walked modules by dotted name: the product's packages and the benchmarks (Alembic's
    revisions, which only Alembic runs, left out)."""
    out = {}
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            if "migrations" in rel.parts:
                continue
            name = ".".join(rel.parts).removesuffix(".__init__")
            out[name] = path
    return out


def layer(module: str) -> tuple[str, int]:
    """(side, rank): side "core", "assets", "serving", "bench" or "tests"; rank within the code
    location."""
    parts = module.split(".")
    if parts[0] == "mlops_core":
        return "core", 0
    if parts[0] in ("serving", BENCH, TESTS):
        return {"serving": "serving", BENCH: "bench", TESTS: "tests"}[parts[0]], 0
    if len(parts) == 1:
        return "assets", 1
    head = parts[1]
    if head in DOMAINS:
        return "assets", STORE_RANK if len(parts) == 3 and parts[2] == STORE else DOMAINS[head]
    if head in TOP:
        return "assets", 8
    assert head in BASE, f"{module}: put it in a layer of test_layers.py"
    return "assets", 1


def is_domain_definitions(module: str) -> bool:
    parts = module.split(".")
    return len(parts) == 3 and parts[1] in DOMAINS and parts[2] == "definitions"


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and dynamic_import(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
    return names


def dynamic_import(func: ast.expr) -> bool:
    """``importlib.import_module``, ``import_module`` or ``__import__``."""
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name in ("import_module", "__import__")


def project_module(name: str, known: dict[str, Path]) -> str | None:
    """The project module an import name refers to (``a.b.C`` -> ``a.b``), if any."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def violations(extra: dict[str, set[str]] | None = None) -> list[str]:
    """Every import that breaks the layering (``extra``: imports to pretend a module has)."""
    walked = modules()
    known = {**walked, **modules((TESTS,))}
    found = []
    for module, path in walked.items():
        side, rank = layer(module)
        for name in sorted(imported(path) | (extra or {}).get(module, set())):
            root = name.split(".")[0]
            if side in ("core", "serving") and root == "dagster":
                found.append(f"{module} imports {name} (no Dagster on this side)")
                continue
            target = project_module(name, known)
            if target is None or target == module:
                continue
            t_side, t_rank = layer(target)
            if t_side == "tests":
                who = "a benchmark" if side == "bench" else "product code"
                found.append(f"{module} ({who}) imports the test suite's {target}")
            elif t_side == "bench" and side != "bench":
                found.append(f"{module} (product code) imports the benchmarks' {target}")
            elif side == "bench":
                continue  # the benchmarks may use any of the product
            elif side == "core" and t_side != "core":
                found.append(f"{module} (mlops_core) imports {target}")
            elif side == "serving" and t_side == "assets":
                found.append(f"{module} (the service) imports the code location's {target}")
            elif side == "assets" and t_side == "serving":
                found.append(f"{module} imports the service's {target}")
            elif is_domain_definitions(target) and module != "mlops_assets.definitions":
                found.append(f"{module} imports {target} (only the top definitions.py gathers them)")
            elif side == "assets" and t_side == "assets" and t_rank > rank:
                found.append(f"{module} (layer {rank}) imports {target} (layer {t_rank}): upward")
    return sorted(set(found))  # one line per (module, what it imports)


def string_constants(path: Path) -> list[str]:
    """The module's string constants, docstrings left out."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def core_paths_into_the_code_location() -> list[str]:
    """mlops_core strings that name ``mlops_assets`` (a path into the code location from the
    layer below it, which the import walk cannot see)."""
    return [
        f"{module}: {text!r}"
        for module, path in modules(("mlops_core",)).items()
        for text in string_constants(path)
        if "mlops_assets" in text
    ]


def test_imports_point_down():
    assert violations() == []


def test_the_walk_sees_each_kind_of_wrong_import():
    """The check itself reports an upward import, a store reaching into a domain, a domain's
    definitions imported sideways, Dagster in the core, the code location in the service, a
    benchmark importing the tests, product code importing the benchmarks."""
    found = violations(
        {
            "mlops_assets.training.promotion": {"mlops_assets.monitoring.assets"},
            "mlops_assets.training.store": {"mlops_assets.training.promotion"},
            "mlops_assets.monitoring.history": {"mlops_assets.alerting.store"},  # allowed: a store
            "mlops_assets.alerting.sensor": {"mlops_assets.training.definitions"},
            "mlops_core.bundle": {"dagster"},
            "serving.runtime": {"mlops_assets.training.registry_resource.ModelRegistry"},
            "bench.scale": {"mlops_assets_tests.helpers", "mlops_assets_tests.helpers.free_port"},
            "mlops_assets.resources": {"bench.support.wait_for"},
        }
    )
    assert sorted(found) == [
        "bench.scale (a benchmark) imports the test suite's mlops_assets_tests.helpers",
        "mlops_assets.alerting.sensor imports mlops_assets.training.definitions "
        "(only the top definitions.py gathers them)",
        "mlops_assets.resources (product code) imports the benchmarks' bench.support",
        "mlops_assets.training.promotion (layer 4) imports mlops_assets.monitoring.assets (layer 5): upward",
        "mlops_assets.training.store (layer 2) imports mlops_assets.training.promotion (layer 4): upward",
        "mlops_core.bundle imports dagster (no Dagster on this side)",
        "serving.runtime (the service) imports the code location's mlops_assets.training.registry_resource",
    ]


def test_the_core_names_no_path_into_the_code_location(tmp_path, monkeypatch):
    assert core_paths_into_the_code_location() == []
    # ... and the check sees one: a core module pointing into mlops_assets/model_specs.
    fake = tmp_path / "mlops_core" / "paths.py"
    fake.parent.mkdir()
    fake.write_text('"""Docstrings may name mlops_assets."""\nSPECS = "mlops_assets/model_specs"\n')
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert core_paths_into_the_code_location() == ["mlops_core.paths: 'mlops_assets/model_specs'"]


def test_the_walk_reads_the_imports_a_module_really_has(tmp_path):
    """What ``imported`` reads from source: both forms of ``import``, function-level ones and
    a dynamic import of a literal name."""
    module = tmp_path / "m.py"
    module.write_text(
        "import importlib\n"
        "from mlops_assets_tests.helpers import free_port\n"
        "def f():\n"
        "    import bench.support\n"
        "    return importlib.import_module('mlops_assets_tests.conftest'), __import__('serving')\n"
    )
    assert imported(module) == {
        "importlib",
        "mlops_assets_tests.helpers",
        "mlops_assets_tests.helpers.free_port",
        "bench.support",
        "mlops_assets_tests.conftest",
        "serving",
    }


def reads_environment(path: Path) -> bool:
    """``os.environ`` / ``os.getenv`` anywhere in the module, or imported from ``os``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("environ", "getenv")
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            return True
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and {a.name for a in node.names}
            & {
                "environ",
                "getenv",
            }
        ):
            return True
    return False


def env_readers() -> set[str]:
    return {str(p.relative_to(REPO)) for p in modules(PACKAGES).values() if reads_environment(p)}


def test_the_environment_is_read_in_few_places():
    readers = env_readers() - ENV_EXEMPT
    assert readers <= ENV_READERS, sorted(readers - ENV_READERS)
    assert len(readers) <= 3


def test_the_service_loads_without_dagster():
    """Importing the service's URL configuration (all of its views and the model runtime)
    leaves Dagster, and the code location, out of the process."""
    code = (
        "import os, sys\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'serving.settings'\n"
        "import django; django.setup()\n"
        "import serving.urls, serving.runtime, serving.api\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'mlops_assets'))\n"
        "print(len(bad), bad[:5])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0 []"
