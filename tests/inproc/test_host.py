"""Which Host values are served ([server] hosts, a trusted proxy's X-Forwarded-Host), in process.
(Malformed Host lines, sent raw through Uvicorn: tests/e2e/test_host.py.)"""

from __future__ import annotations

from tests.inproc.conftest import MakeApp

PUBLIC = 'rules:\n  - paths: ["/**"]\n    allow: anyone\n'


async def test_only_the_listed_hosts_are_served(make_app: MakeApp) -> None:
    gateway = await make_app(policy=PUBLIC, settings={"server": {"hosts": ["app.example", "127.0.0.1"]}})
    client = gateway.client()
    refused = await client.get("/x?redirect=/next", headers={"Host": "evil.example"})
    assert refused.status_code == 400 and "evil" not in refused.headers.get("location", "")
    served = await client.get("/x?redirect=/next", headers={"Host": "app.example"})
    # Served, and the app's redirect to itself points at the host the browser used.
    assert served.status_code == 302 and served.headers["location"] == "http://app.example/next"
    response = await client.get("/x", headers={"Host": "app.example:8443"})
    forwarded = {name.lower(): value for name, value in response.json()["headers"]}
    assert response.status_code == 200 and forwarded["x-forwarded-host"] == "app.example:8443"


async def test_a_trusted_proxys_forwarded_host_is_checked_like_host(make_app: MakeApp) -> None:
    gateway = await make_app(policy=PUBLIC, settings={
        "server": {"trusted_proxies": ["127.0.0.1"], "hosts": ["app.example"]}})
    client = gateway.client()
    for bad in ("evil.example", "user@evil.example", "app.example, evil.example", "evil/path"):
        response = await client.get("/x", headers={"Host": "app.example", "X-Forwarded-Host": bad})
        assert response.status_code == 400, bad
    good = await client.get("/x", headers={"Host": "app.example", "X-Forwarded-Host": "app.example"})
    assert good.status_code == 200
    forwarded = {name.lower(): value for name, value in good.json()["headers"]}
    assert forwarded["x-forwarded-host"] == "app.example"
