"""The prediction service's nginx (``config/nginx/serving.conf``) on loopback, outside Docker.

In the compose stack the file is mounted into the nginx image as its one site. Here the only
rewrites are the two addresses, ``server serving:8000;`` (the upstream) and ``listen 8000;``,
which become loopback ports; the image's ``nginx.conf`` becomes ``NGINX_MAIN`` (the same
http-level settings, temporary paths in a private folder). ``bench/serving.py`` puts it in
front of the service and of the floor; ``mlops_assets_tests/stack/test_nginx_proxy.py``
renders the file with ``render`` too, so both run the same proxy.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROXY_CONFIG = REPO / "config" / "nginx" / "serving.conf"
NGINX_MAIN = """# the nginx image's nginx.conf, with its paths in a private folder
worker_processes auto;
error_log {prefix}/error.log info;
pid {prefix}/nginx.pid;
events {{
    worker_connections 1024;
}}
http {{
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 65;
    client_body_temp_path {prefix}/client_temp;
    proxy_temp_path {prefix}/proxy_temp;
    fastcgi_temp_path {prefix}/fastcgi_temp;
    uwsgi_temp_path {prefix}/uwsgi_temp;
    scgi_temp_path {prefix}/scgi_temp;
    include {site};
}}
"""


def binary() -> str | None:
    """The nginx executable, if installed (``apt-get install -y nginx``)."""
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def render(site: str, upstream_port: int, listen_port: int, prefix: Path) -> Path:
    """Write ``site`` (the text of serving.conf) for loopback and a main file including it
    into ``prefix``; the main file's path."""
    for old, new in (
        ("server serving:8000;", f"server 127.0.0.1:{upstream_port};"),
        ("listen 8000;", f"listen 127.0.0.1:{listen_port};"),
    ):
        if site.count(old) != 1:
            raise ValueError(f"{old!r} must appear once in the proxy's configuration")
        site = site.replace(old, new)
    (prefix / "serving.conf").write_text(site)
    main = prefix / "nginx.conf"
    main.write_text(NGINX_MAIN.format(prefix=prefix, site=prefix / "serving.conf"))
    return main


class Nginx:
    """nginx running ``config/nginx/serving.conf`` on a free loopback port in front of
    ``127.0.0.1:<upstream_port>``, in its own process group; ``stop`` ends it."""

    def __init__(self, upstream_port: int, log: Path):
        path = binary()
        if path is None:
            raise RuntimeError("nginx is not installed (apt-get install -y nginx)")
        # Private but traversable: run as root, nginx's workers are `nobody` and write
        # request bodies into client_temp.
        self.prefix = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        self.prefix.chmod(0o755)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        main = render(PROXY_CONFIG.read_text(), upstream_port, self.port, self.prefix)
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [path, "-c", str(main), "-p", f"{self.prefix}/", "-g", "daemon off;"],
            cwd=self.prefix,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited:\n{log.read_text(errors='replace')[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("nginx did not listen within 30 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._out.close()
        shutil.rmtree(self.prefix, ignore_errors=True)
