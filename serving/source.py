"""Where the served model comes from: ``MODEL_URI``, resolved to a concrete ``Pin`` and loaded.

Two kinds of source:

* ``models:/<name>@<alias>`` (default ``models:/green_taxi_duration@champion``) or
  ``models:/<name>/<version>``: the MLflow registry at ``MLFLOW_TRACKING_URI`` (default the
  SQLite store in ``MLOPS_HOME``), through ``mlops_core.registry`` (its bundle cache included);
* a path to a ``lin_reg.bin`` whose folder also holds ``model.json`` and
  ``reference.parquet`` (a saved ``ModelBundle``), or to such a folder.

``resolve`` turns the source into a ``Pin`` (an alias becomes the version it points to now;
a folder becomes the fingerprint of the bundle in it now); ``load`` loads exactly that
pin. Workers of one service agree on a pin (see ``runtime.py``), not on an alias, so they
serve the same model even if the alias moves in between.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from mlops_core.bundle import DEFAULT_ARTIFACT, INFO_FILE, REFERENCE_FILE, ModelBundle, ModelInfo
from mlops_core.registry import CHAMPION, RegistryOps
from mlops_core.text import redact_url, scrub, url_password

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>[0-9]+)$")


class ModelUnavailable(RuntimeError):
    """No model can be loaded from the source; the message says why and what to do."""


def _scrub(text: str, uri: str) -> str:
    """An error message with the URI's password (if any) blanked out."""
    return scrub(text, url_password(uri))


@dataclass(frozen=True)
class Pin:
    """One concrete model: a registry version, or the bundle found in a folder."""

    kind: str  # "registry" or "path"
    name: str
    version: str | None  # registry version; for a folder, the version in its model.json
    alias: str | None = None
    path: str | None = None  # the bundle folder (kind "path")
    artifact: str = DEFAULT_ARTIFACT
    fingerprint: str | None = None  # the bundle's, for a folder

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Pin:
        return cls(**json.loads(text))

    def same_model(self, other: Pin | None) -> bool:
        if other is None:
            return False
        keys = ("kind", "name", "version", "path", "artifact", "fingerprint")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


@dataclass(frozen=True)
class ModelSource:
    uri: str
    kind: str
    name: str | None = None
    alias: str | None = None
    version: str | None = None
    folder: Path | None = None
    artifact: str = DEFAULT_ARTIFACT

    @classmethod
    def parse(cls, uri: str) -> ModelSource:
        uri = uri.strip()
        if uri.startswith("models:"):
            if m := _ALIAS_URI.match(uri):
                return cls(uri, "registry", name=m["name"], alias=m["alias"])
            if m := _VERSION_URI.match(uri):
                return cls(uri, "registry", name=m["name"], version=m["version"])
            raise ModelUnavailable(
                f"MODEL_URI={uri!r} is not a model URI this service reads: use "
                "models:/<name>@<alias>, models:/<name>/<version> or a path to a lin_reg.bin"
            )
        raw = uri.removeprefix("file://")
        path = Path(raw).expanduser()
        if path.is_dir():
            return cls(uri, "path", folder=path.resolve(), artifact=DEFAULT_ARTIFACT)
        return cls(uri, "path", folder=path.parent.resolve(), artifact=path.name)

    def describe(self) -> str:
        return self.uri if self.kind == "registry" else str(self.folder / self.artifact)

    # --- resolving: which concrete model does the source mean now? -------------------------
    def resolve(self, registry: RegistryOps) -> Pin:
        if self.kind == "path":
            return self._resolve_path()
        return self._resolve_registry(registry)

    def _resolve_path(self) -> Pin:
        assert self.folder is not None
        binary = self.folder / self.artifact
        if not binary.is_file():
            raise ModelUnavailable(f"no model file at {binary} (MODEL_URI={self.uri})")
        missing = [f for f in (INFO_FILE, REFERENCE_FILE) if not (self.folder / f).is_file()]
        if missing:
            raise ModelUnavailable(
                f"{self.folder} holds {self.artifact} but not {' or '.join(missing)}: a model "
                f"folder holds the files ModelBundle.save writes ({self.artifact}, {INFO_FILE}, "
                f"{REFERENCE_FILE})"
            )
        try:
            info = ModelInfo.from_json((self.folder / INFO_FILE).read_text())
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ModelUnavailable(f"{self.folder / INFO_FILE} is not a model.json: {exc}") from exc
        return Pin(
            "path",
            info.model_name,
            info.version,
            path=str(self.folder),
            artifact=self.artifact,
            fingerprint=info.fingerprint,
        )

    def _resolve_registry(self, registry: RegistryOps) -> Pin:
        assert self.name is not None
        uri = registry.uri()
        where = f"the MLflow registry at {redact_url(uri)}"
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
            raise ModelUnavailable(
                f"no model yet: {where} does not exist (train and register "
                f"{self.name!r}, or point MLFLOW_TRACKING_URI / MODEL_URI elsewhere)"
            )
        if self.version is not None:
            return Pin("registry", self.name, self.version)
        alias = self.alias or CHAMPION
        try:
            version = registry.version_by_alias(self.name, alias)
            # No version: one more call tells a missing registered model from a missing
            # alias, so the message says which (and an unreachable registry is still caught).
            exists = version is not None or registry.has_model(self.name)
        except Exception as exc:
            raise ModelUnavailable(f"cannot read {where}: {_scrub(str(exc), uri)}") from exc
        if not exists:
            raise ModelUnavailable(
                f"no model yet: no registered model {self.name!r} in {where} "
                "(train and register one, set its alias, then POST /reload)"
            )
        if version is None:
            try:
                refused = registry.refusal(self.name) if alias == CHAMPION else None
            except Exception as exc:
                refused = f"(cannot read the versions' decisions: {_scrub(str(exc), uri)})"
            if refused:
                raise ModelUnavailable(
                    f"no acceptable model: {self.name!r} has no {alias!r} in {where}: {refused} "
                    "(a model that does not beat the mean predictor is never promoted)"
                )
            raise ModelUnavailable(
                f"no model yet: {self.name!r} has no {alias!r} alias in {where} "
                "(register a model and set the alias, then POST /reload)"
            )
        return Pin("registry", self.name, version, alias=alias)


def load(pin: Pin, registry: RegistryOps) -> ModelBundle:
    """The bundle ``pin`` names (``ModelUnavailable`` with a clear message if it cannot load)."""
    try:
        if pin.kind == "registry":
            assert pin.version is not None
            return registry.load(pin.name, pin.version)
        assert pin.path is not None
        bundle = ModelBundle.load(Path(pin.path), artifact=pin.artifact)
    except ModelUnavailable:
        raise
    except Exception as exc:
        what = f"{pin.name} version {pin.version}" if pin.kind == "registry" else pin.path
        message = _scrub(str(exc), registry.uri())
        raise ModelUnavailable(f"cannot load {what}: {type(exc).__name__}: {message}") from exc
    return bundle
