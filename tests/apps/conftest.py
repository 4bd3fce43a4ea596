"""Real third-party apps behind the real gateway, driven in Chromium: JupyterLab and Datasette.

Each app runs from a virtual environment of its own under .cache/apps/ (tests/apps/envs.py), made
on the first run (JupyterLab ~80 s, Datasette ~15 s on the CI machine) and reused after. These tests
run in CI like every other: if an environment cannot be made they FAIL. Only a developer outside CI
who sets SKIP_APP_TESTS=1 (offline, say) skips them, and pytest prints why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.apps import envs
from tests.apps.pages import WAIT_MS, new_context
from tests.browser.conftest import browser  # noqa: F401  (the same Chromium, launched once per module)
from tests.e2e.harness import ROOT

SKIP_ENV = "SKIP_APP_TESTS"
# What the environments cost on this run, for the summary.
INSTALLS: list[envs.Outcome] = []


def _ensure(app: envs.App, config: pytest.Config) -> envs.App:
    if os.environ.get(SKIP_ENV) == "1" and not os.environ.get("CI"):
        pytest.skip(f"real-app tests skipped ({SKIP_ENV}=1)")
    if not app.installed():
        # Say so before the pause: the first run installs for a minute or more.
        capture = config.pluginmanager.getplugin("capturemanager")
        reporter = config.pluginmanager.getplugin("terminalreporter")
        if capture is not None and reporter is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(f"\nmaking {app.directory.relative_to(ROOT)} for the real-app tests "
                                    f"(first run only, a minute or two) ...")
    try:
        outcome = envs.ensure(app)
    except envs.InstallError as error:
        pytest.fail(f"cannot install {app.name} for the real-app tests: {error}"
                    f"{'' if os.environ.get('CI') else f' (locally, {SKIP_ENV}=1 skips them)'}", pytrace=False)
    INSTALLS.append(outcome)
    return app


@pytest.fixture(scope="session")
def jupyterlab_env(pytestconfig: pytest.Config) -> envs.App:
    return _ensure(envs.JUPYTERLAB, pytestconfig)


@pytest.fixture(scope="session")
def datasette_env(pytestconfig: pytest.Config) -> envs.App:
    return _ensure(envs.DATASETTE, pytestconfig)


@pytest.fixture(autouse=True)
def patient_expect() -> Iterator[None]:
    # Playwright's expect() waits 5 s by default, whatever the context's timeout: too short for
    # JupyterLab's first page load (megabytes of JavaScript) on a busy 2-core machine.
    expect.set_options(timeout=WAIT_MS)
    yield
    expect.set_options(timeout=5_000)  # Playwright's default again, for the tests outside tests/apps


@pytest.fixture
def app_context(browser: Any) -> Iterator[Any]:  # noqa: F811  (the imported fixture, by name)
    """A fresh browser profile, JavaScript on, recording its WebSockets."""
    ctx = new_context(browser)
    yield ctx
    ctx.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for outcome in INSTALLS:
        terminalreporter.write_line(f"real-app environment {outcome}")
