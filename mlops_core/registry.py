"""The model registry: MLflow, for the code location and the prediction service alike.

Every trained model is logged to an MLflow run (params, holdout metrics, the bundle as
artifacts, the sklearn pipeline as an MLflow model) and registered as a version of the
registered model named after its spec. The ``champion`` *alias* (not the deprecated stages)
marks the model that serving and monitoring use. Registering is idempotent: a model whose
fingerprint (spec settings + training rows) is already registered gets that version back.

Why plain ``mlflow`` and not ``dagster-mlflow``: its resource keeps one MLflow run open per
Dagster run and needs a job hook to close it, so under ``dg.materialize`` and in multi-asset
runs runs were left RUNNING and reused (see docs/decisions.md). Here each registration is one
``with mlflow.start_run()`` block, finished or failed when the block ends.

Bundles are cached under ``<cache_dir>/<spec>/v<version>/`` (``lin_reg.bin`` lives there;
``MLOPS_HOME/models`` by default); a cache miss downloads the run's ``bundle/`` artifacts, so a
process that never trained (the prediction service, another container) loads the same files.

``RegistryOps`` holds all of it and needs three values: ``tracking_uri``, ``cache_dir`` and
``artifact_root`` (where a local store keeps artifacts). ``MlflowRegistry`` is the plain class
the service uses; the code location's Dagster resource (``mlops_assets.training.registry_resource``)
mixes the same methods into a ``ConfigurableResource``. Nothing here imports Dagster.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from mlops_core.bundle import DEFAULT_ARTIFACT, ModelBundle
from mlops_core.text import redact_url

log = logging.getLogger(__name__)

CHAMPION = "champion"
BUNDLE_ARTIFACT_PATH = "bundle"
# The promotion decision, as tags of the version (written by the code location's promotion,
# read back here to say why a spec has no champion).
DECISION_TAG = "decision"
DECISION_REASON_TAG = "decision_reason"
PROMOTED = "promoted"
NOT_PROMOTED = "not_promoted"


class RegistryError(RuntimeError):
    pass


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    created: bool  # False when an identical model was already registered


def _mlflow():
    # Imported lazily: mlflow takes ~2 s to import and code-location loads should stay fast.
    import mlflow

    return mlflow


def is_not_found(exc: BaseException) -> bool:
    """Whether an MLflow error means "no such registered model / version / alias" (the
    same error codes come back from a local store and over REST)."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return False
    if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
        return True
    text = str(exc)
    return exc.error_code == "INVALID_PARAMETER_VALUE" and "alias" in text and "not found" in text


class RegistryOps:
    """MLflow tracking + registry at ``tracking_uri``, with a local bundle cache in
    ``cache_dir``; a local store puts artifacts under ``artifact_root``."""

    tracking_uri: str
    cache_dir: str
    artifact_root: str | None
    ui_url: str | None  # the MLflow UI's address for links; None: the tracking URI if http(s)
    _client: object

    # --- plumbing -------------------------------------------------------------------------
    def uri(self) -> str:
        return self.tracking_uri

    def describe(self) -> str:
        return redact_url(self.uri())

    def _is_local_store(self) -> bool:
        return self.uri().startswith(("sqlite:", "file:")) or "://" not in self.uri()

    def client(self):
        if self._client is None:
            mlflow = _mlflow()
            uri = self.uri()
            if uri.startswith("sqlite:///"):
                Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            # One tracking URI per process (mlflow keeps it globally); runs here are sequential.
            mlflow.set_tracking_uri(uri)
            self._client = mlflow.MlflowClient(tracking_uri=uri)
        return self._client

    def bundle_dir(self, name: str, version: str) -> Path:
        return Path(self.cache_dir) / name / f"v{version}"

    def experiment_id(self, name: str) -> str:
        client = self.client()
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = None
        if self._is_local_store() and self.artifact_root:
            # Without an explicit location MLflow puts artifacts in ./mlruns of the process.
            location = (Path(self.artifact_root).resolve() / name).as_uri()
        return client.create_experiment(name, artifact_location=location)

    def ui_base(self) -> str | None:
        """The MLflow UI's address for links: ``ui_url``, else the tracking URI when it is
        http(s) (the server serves its UI there), without any user or password in it."""
        base = self.ui_url or (self.uri() if self.uri().startswith(("http://", "https://")) else None)
        if not base:
            return None
        parts = urlsplit(base)
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])).rstrip("/")

    def run_url(self, run_id: str, name: str) -> str | None:
        base = self.ui_base()
        return f"{base}/#/experiments/{self.experiment_id(name)}/runs/{run_id}" if base else None

    def version_url(self, name: str, version: str) -> str | None:
        """The registered model version's page in the MLflow UI, or None without a UI address."""
        base = self.ui_base()
        return f"{base}/#/models/{quote(name)}/versions/{version}" if base else None

    # --- writing --------------------------------------------------------------------------
    def find_by_fingerprint(self, name: str, fingerprint: str) -> str | None:
        client = self.client()
        try:
            found = client.search_model_versions(f"name='{name}' and tag.fingerprint='{fingerprint}'")
        except Exception as exc:  # no registered model yet
            if is_not_found(exc):
                return None
            raise
        versions = sorted(int(v.version) for v in found if v.status == "READY")
        return str(versions[0]) if versions else None

    def register(
        self,
        bundle: ModelBundle,
        *,
        artifact: str,
        params: dict,
        tags: dict[str, str],
        run_name: str | None = None,
    ) -> RegisteredVersion:
        """Log ``bundle`` to a new MLflow run named ``run_name`` (what the run is: ``retrain
        2022-01-31 (prediction_drift > 0.20)``; default ``tags["source"]``) and register it (or
        return the identical version)."""
        name = bundle.info.model_name
        existing = self.find_by_fingerprint(name, bundle.info.fingerprint)
        client = self.client()
        if existing is not None:
            mv = client.get_model_version(name, existing)
            bundle.info.version = existing
            self._cache(bundle, name, existing, artifact)
            return RegisteredVersion(name, existing, mv.run_id, created=False)

        mlflow = _mlflow()
        import sklearn
        import skops

        info = bundle.info
        with tempfile.TemporaryDirectory() as tmp:
            staged = Path(tmp) / BUNDLE_ARTIFACT_PATH
            with mlflow.start_run(
                experiment_id=self.experiment_id(name), run_name=run_name or tags.get("source")
            ) as run:
                mlflow.set_tags(tags)
                mlflow.log_params(
                    {
                        "algorithm": info.algorithm,
                        "categorical": ",".join(info.features.categorical),
                        "numerical": ",".join(info.features.numerical),
                        "missing": info.features.missing,
                        "window_start": info.window_start,
                        "window_end": info.window_end,
                        "holdout_start": info.holdout_start,
                        **params,
                    }
                )
                mlflow.log_metrics(
                    {
                        "holdout_rmse": info.holdout.rmse,
                        "holdout_mae": info.holdout.mae,
                        "mean_baseline_rmse": info.mean_baseline.rmse,
                        "n_train": info.n_train,
                        "n_holdout": info.n_holdout,
                    }
                )
                # skops, not (cloud)pickle: loading the MLflow model runs no code from it either.
                model_info = mlflow.sklearn.log_model(
                    bundle.pipeline,
                    name="model",
                    serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
                    pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"skops=={skops.__version__}"],
                    registered_model_name=name,
                )
                version = str(model_info.registered_model_version)
                info.version = version
                bundle.save(staged, artifact)
                mlflow.log_artifacts(str(staged), artifact_path=BUNDLE_ARTIFACT_PATH)
                for key, value in {**tags, "fingerprint": info.fingerprint}.items():
                    client.set_model_version_tag(name, version, key, str(value))
                run_id = run.info.run_id
        self._cache(bundle, name, version, artifact)
        return RegisteredVersion(name, version, run_id, created=True)

    def _cache(self, bundle: ModelBundle, name: str, version: str, artifact: str) -> None:
        target = self.bundle_dir(name, version)
        if not (target / artifact).is_file():
            bundle.save(target, artifact)

    def set_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client().set_model_version_tag(name, version, key, str(value))

    def set_champion(self, name: str, version: str) -> None:
        self.client().set_registered_model_alias(name, CHAMPION, version)

    # --- reading --------------------------------------------------------------------------
    def champion(self, name: str) -> str | None:
        """The version the ``champion`` alias points to, or None when there is none yet."""
        return self.version_by_alias(name, CHAMPION)

    def version_by_alias(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points to, or None when there is none (no such registered
        model, or no such alias). Any other error (an unreachable server, say) is raised:
        "cannot tell" is not "no model"."""
        try:
            return str(self.client().get_model_version_by_alias(name, alias).version)
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise

    def has_model(self, name: str) -> bool:
        """Whether a registered model ``name`` exists (errors other than "not found" raise)."""
        try:
            self.client().get_registered_model(name)
        except Exception as exc:
            if is_not_found(exc):
                return False
            raise
        return True

    def refusal(self, name: str) -> str | None:
        """Why the newest version of ``name`` that promotion refused was refused, as
        ``"v3 was not promoted: <reason>"``; None when no version was refused (or there is
        no such registered model)."""
        try:
            versions = self.client().search_model_versions(f"name='{name}'")
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
        for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
            if mv.tags.get(DECISION_TAG) == NOT_PROMOTED:
                reason = mv.tags.get(DECISION_REASON_TAG) or "no reason recorded"
                return f"v{mv.version} was not promoted: {reason}"
        return None

    def version_tags(self, name: str, version: str) -> dict[str, str]:
        return dict(self.client().get_model_version(name, version).tags)

    def load(self, name: str, version: str, artifact: str = DEFAULT_ARTIFACT) -> ModelBundle:
        """The bundle of ``name`` version ``version``, from the cache or downloaded from MLflow."""
        target = self.bundle_dir(name, str(version))
        if not (target / artifact).is_file():
            self._download(name, str(version), target)
        bundle = ModelBundle.load(target, artifact)
        bundle.info.version = str(version)
        return bundle

    def _download(self, name: str, version: str, target: Path) -> None:
        mlflow = _mlflow()
        client = self.client()
        try:
            mv = client.get_model_version(name, version)
        except Exception as exc:
            raise RegistryError(
                f"model {name} version {version} is not in the registry at {self.describe()}: {exc}"
            ) from exc
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        try:
            mlflow.artifacts.download_artifacts(
                run_id=mv.run_id,
                artifact_path=BUNDLE_ARTIFACT_PATH,
                dst_path=str(tmp),
                tracking_uri=self.uri(),
            )
            downloaded = tmp / BUNDLE_ARTIFACT_PATH
            if target.exists():
                shutil.rmtree(target)
            os.replace(downloaded, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class MlflowRegistry(RegistryOps):
    """The registry as a plain object (the prediction service's; tests')."""

    tracking_uri: str
    cache_dir: str
    artifact_root: str | None = None
    ui_url: str | None = None
    _client: object = field(default=None, init=False, repr=False, compare=False)
