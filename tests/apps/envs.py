"""Each real app in a virtual environment of its own, made once under .cache/apps/ and reused.

The apps' dependencies (JupyterLab brings ~90 packages) never touch the gateway's .venv: a
version the app needs must not change what the gateway's own tests run on, and the gateway must
never import something only because an app happened to install it. Each environment installs a
requirements file that pins every package (tests/apps/requirements/), so a new release of any
dependency cannot change what CI tests. A stamp file written after a successful install records
what was installed (the requirements' hash and the Python version); an environment whose stamp
does not match, half-made ones included, is made again from scratch.

`python3 -m tests.apps.envs` makes them all at once, side by side, from a bare Python (no
dependencies): .ci/run starts it in the background while scripts/test installs the gateway, and
the tests then find them made (a lock makes a test wait for an install still running).
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "apps"
REQUIREMENTS = Path(__file__).resolve().parent / "requirements"
STAMP = ".installed"
SECONDS_FILE = ".install-seconds"  # how long making it took, for the report of a later run
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


@dataclass(frozen=True)
class Outcome:
    app: App
    installed: bool  # False: it was there already (or another process made it meanwhile)
    seconds: float  # installing, or waiting for another process's install

    def __str__(self) -> str:
        where = self.app.directory.relative_to(ROOT)
        if self.installed:
            return f"{where}: installed in {self.seconds:.0f} s"
        # Made earlier, or meanwhile by another process (the CI's early install): say what it cost.
        made = self.app.directory / SECONDS_FILE
        took = f"its install took {float(made.read_text()):.0f} s" if made.exists() else "made earlier"
        waited = f", this run waited {self.seconds:.0f} s for it" if self.seconds >= 1 else ""
        return f"{where}: reused ({took}{waited})"


def ensure(app: App) -> Outcome:
    """Make the app's environment unless its stamp matches.

    A lock serialises two processes (a test run, the CI's early install) wanting the same
    environment, so neither uses a half-made one.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with (CACHE / f"{app.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if app.installed():
            return Outcome(app, False, time.monotonic() - started)
        if app.directory.exists():
            shutil.rmtree(app.directory)
        log = CACHE / f"{app.directory.name}.install.log"
        log.unlink(missing_ok=True)
        _run([sys.executable, "-m", "venv", str(app.directory)], log)
        _run([str(app.bin("python")), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet",
              "-r", str(app.requirements)], log)
        seconds = time.monotonic() - started
        (app.directory / SECONDS_FILE).write_text(f"{seconds:.1f}\n")
        (app.directory / STAMP).write_text(app.wanted_stamp())
        return Outcome(app, True, seconds)


def main() -> int:
    apps = [JUPYTERLAB, DATASETTE]
    with ThreadPoolExecutor(len(apps)) as pool:
        futures = [pool.submit(ensure, app) for app in apps]
    failed = 0
    for app, future in zip(apps, futures, strict=True):
        error = future.exception()
        if error is None:
            print(f"real-app environment {future.result()}")
        else:
            failed += 1
            print(f"real-app environment for {app.name}: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
