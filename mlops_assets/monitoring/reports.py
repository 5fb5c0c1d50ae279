"""Where the daily Evidently HTML reports go: one folder per model, one file per day."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import dagster as dg

from mlops_assets.monitoring import evidently_metrics as E


class ReportStore(dg.ConfigurableResource):
    """HTML reports under ``directory`` (``MLOPS_HOME/reports``): ``<model>/<day>.html``,
    beside one shared copy of Evidently's JS library."""

    directory: str
    base_url: str | None = None  # REPORTS_URL: where ``directory`` is served over HTTP

    def link(self, path: Path | str) -> dg.MetadataValue:
        """A report file as asset metadata: a URL under ``base_url`` when it is set (the UI
        makes it a link), else the file's path."""
        if self.base_url:
            relative = Path(path).resolve().relative_to(Path(self.directory).resolve())
            return dg.MetadataValue.url(f"{self.base_url.rstrip('/')}/{quote(relative.as_posix())}")
        return dg.MetadataValue.path(str(path))

    def path_for(self, model_name: str, day: str) -> Path:
        return Path(self.directory) / model_name / f"{day}.html"

    def save_bytes(self, content: bytes, model_name: str, name: str) -> Path:
        """A file of the model's folder (the monitoring history's chart), written whole."""
        path = Path(self.directory) / model_name / name
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".partial")
        partial.write_bytes(content)
        partial.replace(path)
        return path

    def save(
        self, snapshot, model_name: str, day: str, title: str | None = None, appendix: str | None = None
    ) -> Path:
        """The day's report; ``appendix``: HTML appended after Evidently's (its segments)."""
        return E.save_html(snapshot, self.path_for(model_name, day), title, appendix)
