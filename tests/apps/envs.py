"""Each real app in a virtual environment of its own, made once under .cache/apps/ and reused.

The apps' dependencies (JupyterLab brings ~90 packages) never touch the gateway's .venv: a
version the app needs must not change what the gateway's own tests run on, and the gateway must
never import something only because an app happened to install it. Each environment installs a
requirements file that pins every package (tests/apps/requirements/), so a new release of any
dependency cannot change what CI tests. A stamp file written after a successful install records
what was installed (the requirements' hash and the Python version); an environment whose stamp
does not match, half-made ones included, is made again from scratch.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.harness import ROOT

CACHE = ROOT / ".cache" / "apps"
REQUIREMENTS = Path(__file__).resolve().parent / "requirements"
STAMP = ".installed"
# Measured on the 2-core CI machine with an empty pip cache: JupyterLab ~80 s, Datasette ~15 s.
INSTALL_TIMEOUT = 900


class InstallError(RuntimeError):
    """The app's environment could not be made (no network, a package missing from the index)."""


@dataclass(frozen=True)
class App:
    """An app installed from requirements/NAME.txt, which pins NAME==VERSION among the rest."""

    name: str

    @property
    def requirements(self) -> Path:
        return REQUIREMENTS / f"{self.name}.txt"

    @property
    def version(self) -> str:
        match = re.search(rf"^{re.escape(self.name)}==(\S+)$", self.requirements.read_text(), re.MULTILINE | re.IGNORECASE)
        if match is None:
            raise InstallError(f"{self.requirements} does not pin {self.name}==VERSION")
        return match.group(1)

    @property
    def directory(self) -> Path:
        return CACHE / f"{self.name}-{self.version}"

    def bin(self, program: str) -> Path:
        return self.directory / "bin" / program

    def wanted_stamp(self) -> str:
        digest = hashlib.sha256(self.requirements.read_bytes()).hexdigest()
        return f"{digest} python{sys.version_info.major}.{sys.version_info.minor}\n"

    def installed(self) -> bool:
        stamp = self.directory / STAMP
        return stamp.exists() and stamp.read_text() == self.wanted_stamp()


JUPYTERLAB = App("jupyterlab")
DATASETTE = App("datasette")


def _run(command: list[str], log: Path) -> None:
    # The app's install must not see the gateway's environment: no inherited PYTHONPATH/PYTHONHOME
    # or VIRTUAL_ENV could make pip look at (or into) the gateway's .venv.
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    with log.open("ab") as out:
        out.write(("$ " + " ".join(command) + "\n").encode())
        out.flush()
        try:
            result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, timeout=INSTALL_TIMEOUT, check=False)
        except subprocess.TimeoutExpired as error:
            raise InstallError(f"{command[0]} took over {INSTALL_TIMEOUT}s; see {log}") from error
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise InstallError(f"'{' '.join(command[:4])} ...' exited with {result.returncode} (log: {log}):\n{tail}")


def ensure(app: App) -> float | None:
    """Make the app's environment unless its stamp matches; the seconds the install took, None if reused.

    A lock serialises two test runs of the same worktree, so neither uses a half-made environment.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{app.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if app.installed():
            return None
        started = time.monotonic()
        if app.directory.exists():
            shutil.rmtree(app.directory)
        log = CACHE / f"{app.directory.name}.install.log"
        log.unlink(missing_ok=True)
        _run([sys.executable, "-m", "venv", str(app.directory)], log)
        _run([str(app.bin("python")), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet",
              "-r", str(app.requirements)], log)
        (app.directory / STAMP).write_text(app.wanted_stamp())
        return time.monotonic() - started
