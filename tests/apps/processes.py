"""Real app processes (JupyterLab, Datasette) on free loopback ports, started from their own environments.

Each runs in a process group of its own: JupyterLab starts kernels and terminal shells as children,
and stopping the app must not leave them behind. Readiness is polled over HTTP; nothing sleeps to
synchronise.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.e2e.harness import START_TIMEOUT, wait_until

# JupyterLab's first start builds its settings and workspace files: slower than a gateway.
APP_START_TIMEOUT = max(START_TIMEOUT, 60.0)


@dataclass
class AppProcess:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # JupyterLab shuts its kernels and terminals down on SIGTERM
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        # Whatever the app started and left behind (a kernel that did not hear the shutdown): its
        # group is the one this process led, so only what this test started is ended.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def start_app(name: str, command: list[str], *, port: int, ready_path: str, log_dir: Path, cwd: Path,
              env: dict[str, str] | None = None) -> AppProcess:
    """Run ``command`` (which must listen on 127.0.0.1:``port``) until GET ``ready_path`` answers 200."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    clean = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=cwd, env={**clean, **(env or {})}, start_new_session=True)
    app = AppProcess(name, port, process, log_path)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{app.log()[-4000:]}")
        try:
            return httpx.get(app.url + ready_path, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, name, timeout=APP_START_TIMEOUT)
    except BaseException:
        app.stop()
        raise
    return app
