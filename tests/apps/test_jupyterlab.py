"""JupyterLab behind the gateway, in Chromium, with the gateway's default configuration.

Jupyter's own sign-in is off (the gateway is the authentication), but its cross-origin defences
stay on, as they are by default: API requests whose Origin does not match Host are refused, and
so are writes without the XSRF token. Before `upstream.preserve_host` defaulted to true, those
checks refused every save and every kernel WebSocket behind the gateway (issue 11).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.apps import envs
from tests.apps.pages import on_sign_in_form, path_of, sign_in, sockets
from tests.apps.processes import AppProcess, start_app
from tests.browser.screens import screenshot
from tests.e2e.harness import Gateway, free_port, wait_until, write_gateway

pytestmark = pytest.mark.apps

POLICY = """
rules:
  - paths: ["/**"]
    roles: [notebook]
"""
# Each test signs in as its own user: revoking one user's sessions leaves the other tests alone.
USERS = {"ann": "notebook", "ben": "notebook", "cat": "notebook"}
# The gateway re-checks open sockets every second; "a couple of seconds" is the README's promise.
REVOCATION_BOUND_MS = 5_000

# JupyterLab's user settings: no toast asking to fetch Jupyter news (it would cover the page, and
# saying yes makes the server fetch from the internet).
LAB_SETTINGS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                {"fetchNews": "false", "checkForUpdates": False}}


@dataclass
class Jupyter:
    app: AppProcess
    notebooks: Path  # the server's root folder; terminals start here too


@pytest.fixture(scope="module")
def jupyter(jupyterlab_env: envs.App, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jupyter]:
    work = tmp_path_factory.mktemp("jupyterlab")
    home, notebooks = work / "home", work / "notebooks"
    notebooks.mkdir()
    for name, values in LAB_SETTINGS.items():
        (home / "lab-settings" / name).parent.mkdir(parents=True, exist_ok=True)
        (home / "lab-settings" / name).write_text(json.dumps(values))
    # Every Jupyter folder inside the test's own: nothing read from or written to the real home.
    env = {"HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "IPYTHONDIR": str(home / "ipython"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "lab-workspaces"), "JUPYTER_PLATFORM_DIRS": "1"}
    port = free_port()
    command = [
        str(jupyterlab_env.bin("jupyter-lab")), "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--ServerApp.root_dir={notebooks}",
        # Jupyter's own sign-in off: an empty token and no password. The gateway is the authentication.
        "--IdentityProvider.token=",
        # Its defences against other sites stay ON (these are the defaults, written out so that nobody
        # "fixes" a failure here by turning them off): XSRF tokens on writes, Origin must match Host.
        "--ServerApp.disable_check_xsrf=False", "--ServerApp.allow_origin=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")  # CI runs as root; Jupyter refuses to start as root without it
    app = start_app("jupyterlab", command, port=port, ready_path="/api/status", log_dir=work, cwd=notebooks, env=env)
    yield Jupyter(app, notebooks)
    app.stop()


@pytest.fixture(scope="module")
def gateway(jupyter: Jupyter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway in front of JupyterLab with its default configuration: nothing Jupyter-specific."""
    instance = write_gateway(tmp_path_factory.mktemp("jupyterlab-gateway"), jupyter.app.url, policy=POLICY)
    instance.add_users(USERS)
    instance.start()
    yield instance
    instance.stop()


def workspace(user: str) -> str:
    # One Jupyter server serves every test, and JupyterLab keeps the layout (open tabs) on the
    # server: a workspace per user keeps one test's tabs out of the next test's page.
    return f"/lab/workspaces/{user}"


def open_lab(page: Any, gateway: Gateway, user: str) -> None:
    """Ask for JupyterLab, sign in on the gateway's page, and land in JupyterLab with its launcher."""
    page.goto(gateway.url + workspace(user))
    sign_in(page, user)
    assert path_of(page.url) == workspace(user), page.url
    expect(page.locator(".jp-LauncherCard").first).to_be_visible()


def new_notebook_runs(page: Any, code: str, output: str) -> None:
    """From the launcher: a new Python notebook, ``code`` run in its first cell, ``output`` shown."""
    page.get_by_role("button", name="Python 3 (ipykernel)").and_(page.locator('[data-category="Notebook"]')).click()
    expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle")  # the kernel started and answered
    page.locator(".jp-Notebook .jp-Cell .cm-content").first.click()
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")
    expect(page.locator(".jp-OutputArea-output").first).to_have_text(output)


def kernel_sockets(page: Any, gateway: Gateway) -> list[str]:
    ws = gateway.url.replace("http://", "ws://", 1)
    return [s["url"] for s in sockets(page) if s["opened"] and re.match(re.escape(ws) + r"/api/kernels/[^/]+/channels", s["url"])]


def test_jupyter_itself_refuses_cross_origin_and_tokenless_writes(jupyter: Jupyter) -> None:
    """The strict Jupyter the browser tests run against: straight to Jupyter, no gateway."""
    with httpx.Client(base_url=jupyter.app.url, timeout=10) as client:
        assert client.get("/api/status").status_code == 200  # no token needed: its own sign-in is off
        xsrf = client.get("/lab").cookies.get("_xsrf")
        assert xsrf, "JupyterLab set no _xsrf cookie"
        body = {"type": "notebook"}
        foreign = client.post("/api/contents", json=body, headers={"Origin": "http://elsewhere.example",
                                                                   "X-XSRFToken": xsrf})
        assert foreign.status_code == 404, foreign.text  # "Blocking Cross Origin API request"
        tokenless = client.post("/api/contents", json=body, headers={"Origin": jupyter.app.url})
        assert tokenless.status_code == 403 and "_xsrf" in tokenless.text, tokenless.text
    assert list(jupyter.notebooks.glob("*.ipynb")) == []


def test_notebook_runs_a_cell_and_saves(gateway: Gateway, jupyter: Jupyter, app_context: Any) -> None:
    page = app_context.new_page()
    open_lab(page, gateway, "ann")
    new_notebook_runs(page, "print(6*7)", "42")
    assert kernel_sockets(page, gateway), f"no kernel WebSocket through the gateway: {sockets(page)}"
    screenshot(page, "apps-jupyterlab-1-cell-ran")

    # Save: JupyterLab asks for a name on the first save (a rename, then a PUT of the notebook).
    page.keyboard.press("Control+s")
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("textbox").fill("answer.ipynb")
    dialog.get_by_role("button", name="Rename and Save").click()
    tab = page.locator(".lm-TabBar-tab", has_text="answer.ipynb")
    expect(tab).to_be_visible()
    expect(tab).not_to_have_class(re.compile(r"\bjp-mod-dirty\b"))
    saved = json.loads((jupyter.notebooks / "answer.ipynb").read_text())
    assert "".join(saved["cells"][0]["source"]) == "print(6*7)"  # nbformat may split text into lines
    assert "".join(saved["cells"][0]["outputs"][0]["text"]) == "42\n"
    page.close()


# A notebook as JupyterLab saves one after running print(6*7) (see the test above, which checks that
# the browser's save writes exactly this source and output).
SAVED_NOTEBOOK = {
    "cells": [{"cell_type": "code", "execution_count": 1, "id": "c0ffee00", "metadata": {},
               "outputs": [{"name": "stdout", "output_type": "stream", "text": ["42\n"]}],
               "source": ["print(6*7)"]}],
    "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def test_a_saved_notebook_reopens_with_its_output(gateway: Gateway, jupyter: Jupyter, app_context: Any) -> None:
    # Everything comes from the server, through the gateway: the notebook, its output, its kernel.
    (jupyter.notebooks / "reopened.ipynb").write_text(json.dumps(SAVED_NOTEBOOK))
    page = app_context.new_page()
    page.goto(gateway.url + workspace("cat") + "/tree/reopened.ipynb")
    sign_in(page, "cat")
    notebook = page.locator(".jp-NotebookPanel", has=page.locator(".jp-OutputArea-output"))
    expect(notebook.locator(".jp-OutputArea-output").first).to_have_text("42")
    expect(notebook.locator(".jp-InputArea-prompt").first).to_have_text("[1]:")  # the saved run, not a new one
    expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle")
    assert kernel_sockets(page, gateway), f"no kernel WebSocket through the gateway: {sockets(page)}"
    screenshot(page, "apps-jupyterlab-2-reopened")


def test_revoking_the_session_closes_kernel_and_terminal_sockets(gateway: Gateway, jupyter: Jupyter,
                                                                 app_context: Any) -> None:
    page = app_context.new_page()
    open_lab(page, gateway, "ben")
    new_notebook_runs(page, "print(6*7)", "42")

    # A terminal beside it: typed input reaches the shell over the terminal's WebSocket.
    page.locator('.lm-TabBar-addButton[title="New Launcher"]').click()  # the "+" beside the tabs
    page.get_by_role("button", name="Terminal", exact=True).click()
    page.wait_for_function("() => window.__sockets.some(s => s.url.includes('/terminals/websocket/') && s.opened)")
    page.locator(".jp-Terminal .xterm-helper-textarea").focus()
    page.keyboard.type("echo $((6*7)) | tee from-terminal.txt\n")
    written = jupyter.notebooks / "from-terminal.txt"
    wait_until(lambda: written.exists() and written.read_text() == "42\n", "the terminal's command", timeout=15)
    screenshot(page, "apps-jupyterlab-3-terminal")

    live = [(index, s["url"]) for index, s in enumerate(sockets(page)) if s["opened"] and not s["closed"]]
    kinds = {kind for kind in ("/api/kernels/", "/terminals/websocket/", "/api/events/subscribe")
             if any(kind in url for _, url in live)}
    assert kinds == {"/api/kernels/", "/terminals/websocket/", "/api/events/subscribe"}, live

    # JupyterLab saves its layout (the open tabs) a moment after it changes, and the page reopened
    # below restores the notebook and the terminal from it: the revocation waits for that save, or
    # the save meets the revocation (401) and there is nothing to reconnect to.
    def layout_saved() -> bool:
        data = httpx.get(jupyter.app.url + "/lab/api/workspaces/ben", timeout=5).json().get("data", {})
        return any(key.startswith("terminal:") for key in data) and any(key.startswith("notebook:") for key in data)

    wait_until(layout_saved, "JupyterLab's saved layout with the notebook and the terminal", timeout=20)
    revoked_at = page.evaluate("() => Date.now()")
    started = time.monotonic()
    result = gateway.cli("sessions", "revoke", "--user", "ben")
    assert result.returncode == 0, result.stderr
    page.wait_for_function("(indices) => indices.every(i => window.__sockets[i].closed !== null)",
                           arg=[index for index, _ in live], timeout=REVOCATION_BOUND_MS)
    took = time.monotonic() - started
    after = sockets(page)
    closes = {after[index]["url"]: (after[index]["code"], after[index]["reason"]) for index, _ in live}
    assert all(code == 1008 for code, _ in closes.values()), f"close codes after revocation ({took:.1f} s): {closes}"
    # JupyterLab tries to reconnect at once; the gateway refuses each handshake (no session).
    reopened = [s["url"] for s in after if s["opened"] and s["opened"] > revoked_at]
    assert reopened == [], f"sockets opened again after the revocation: {reopened}"
    screenshot(page, "apps-jupyterlab-4-revoked")

    # The next page load asks for a sign-in; afterwards JupyterLab restores its tabs and reconnects
    # to the same kernel and terminal.
    page.close()  # (without "leave the page?": the untitled notebook was never saved)
    page = app_context.new_page()
    page.goto(gateway.url + workspace("ben"))
    assert on_sign_in_form(page)
    sign_in(page, "ben")
    for kind in ("/api/kernels/", "/terminals/websocket/"):
        page.wait_for_function("(kind) => window.__sockets.some(s => s.url.includes(kind) && s.opened && !s.closed)", arg=kind)
