"""HTTPS served by the gateway itself, and whose word on the scheme a gateway behind a TLS terminator takes."""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import PYTHON, Gateway, csrf_token, sign_in, wait_until

HSTS = "max-age=31536000"


def _with_cryptography(cert: Path, key: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made now: cryptography if installed, else openssl."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        _with_cryptography(cert, key)
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("no test certificate: neither the cryptography package nor the openssl binary is available")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    return cert, key


def start_tls(gateway: Gateway, verify: ssl.SSLContext) -> str:
    """The harness's start, polling over HTTPS; the fixture's teardown stops the process."""
    with gateway.log_path.open("ab") as log:  # the child has its own copy of the descriptor
        gateway.process = subprocess.Popen([PYTHON, "-m", "gateway", "serve", "--config", str(gateway.config)],
                                           stdout=log, stderr=subprocess.STDOUT, cwd=gateway.directory)
    base = f"https://127.0.0.1:{gateway.port}"

    def ready() -> bool:
        assert gateway.process is not None
        if gateway.process.poll() is not None:
            raise RuntimeError(f"gateway exited with {gateway.process.returncode}:\n{gateway.log()}")
        try:
            return httpx.get(base + "/.gateway/healthz", verify=verify, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, "TLS gateway")
    return base


def test_https_sign_in_with_hsts_everywhere_and_a_secure_host_cookie(make_gateway: Any,
                                                                     certificate: tuple[Path, Path]) -> None:
    gateway: Gateway = make_gateway(settings={"server": {"certfile": "tls/cert.pem", "keyfile": "tls/key.pem"},
                                              "session": {"secure_cookie": True}},
                                    users={"alice": "admin"}, start=False)
    (gateway.directory / "tls").mkdir()
    for source in certificate:
        shutil.copy(source, gateway.directory / "tls" / source.name)
    verify = ssl.create_default_context(cafile=str(certificate[0]))
    base = start_tls(gateway, verify)
    assert f"listening on https://127.0.0.1:{gateway.port}" in gateway.log()

    with httpx.Client(base_url=base, verify=verify, follow_redirects=False, timeout=30) as client:
        form = client.get("/.gateway/login")
        assert form.headers["strict-transport-security"] == HSTS
        csrf_cookie = form.headers["set-cookie"]
        assert csrf_cookie.startswith("__Host-gateway_csrf=") and "secure" in csrf_cookie.lower()
        signed_in = sign_in(client, "alice")
        assert signed_in.status_code == 303, signed_in.text
        assert signed_in.headers["strict-transport-security"] == HSTS
        session_cookie = next(v for v in signed_in.headers.get_list("set-cookie") if v.startswith("__Host-gateway_session="))
        attributes = {part.strip().lower() for part in session_cookie.split(";")}
        assert {"secure", "httponly", "path=/", "samesite=lax"} <= attributes
        assert not any(part.startswith("domain") for part in attributes)

        whoami = client.get("/.gateway/whoami")  # the Secure cookie came back over HTTPS
        assert whoami.status_code == 200 and whoami.json()["user"] == "alice"
        assert whoami.headers["strict-transport-security"] == HSTS
        proxied = client.get("/reports/q1")
        assert proxied.status_code == 200 and proxied.headers["strict-transport-security"] == HSTS
        seen = {name.lower(): value for name, value in proxied.json()["headers"]}
        assert seen["x-forwarded-proto"] == "https" and seen["x-forwarded-user"] == "alice"
        denied = client.get("/internal/x")
        assert denied.status_code == 403 and denied.headers["strict-transport-security"] == HSTS

    # The gateway's own refusals, on the proxy path and on its pages, carry it too.
    with httpx.Client(base_url=base, verify=verify, follow_redirects=False, timeout=30) as anonymous:
        for path, accept, status in (("/", "text/html", 302), ("/", "application/json", 401),
                                     ("/a%2fb", "text/html", 400), ("/.gateway/nope", "text/html", 404),
                                     ("/public/x", "text/html", 200)):
            response = anonymous.get(path, headers={"Accept": accept})
            assert response.status_code == status, path
            assert response.headers.get("strict-transport-security") == HSTS, path

    with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
        httpx.get(f"http://127.0.0.1:{gateway.port}/.gateway/healthz", timeout=5)


def test_bad_tls_settings_stop_serve_with_one_line_naming_the_key(make_gateway: Any) -> None:
    half: Gateway = make_gateway(settings={"server": {"certfile": "cert.pem"}}, start=False)
    result = half.cli("serve")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"gateway: {half.config}: server.keyfile: needed with server.certfile (give both files, or neither)"]

    broken: Gateway = make_gateway(settings={"server": {"certfile": "cert.pem", "keyfile": "key.pem"}}, start=False)
    (broken.directory / "cert.pem").write_text("not a certificate\n")
    (broken.directory / "key.pem").write_text("not a key\n")
    result = broken.cli("serve")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "server.certfile/keyfile: cannot load" in lines[0]
    # Commands that do not listen keep working while the certificate is being fixed.
    assert broken.cli("users", "list").returncode == 0


def _as_seen(response: httpx.Response) -> dict[str, str]:
    return {name.lower(): value for name, value in response.json()["headers"]}


def test_forwarded_headers_are_believed_only_from_a_trusted_proxy(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway(settings={"server": {"trusted_proxies": ["127.0.0.1"]}}, users={"alice": "admin"})
    claims = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Host": "app.example"}
    own_host = f"127.0.0.1:{gateway.port}"
    # Loopback holds all of 127.0.0.0/8: the same machine is the trusted proxy (127.0.0.1) and a
    # stranger (127.0.0.2), told apart by the source address the gateway sees.
    stranger_transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with gateway.client() as proxy, gateway.client(transport=stranger_transport) as stranger:
        believed = _as_seen(proxy.get("/public/echo", headers=claims))
        assert believed["x-forwarded-proto"] == "https"
        assert believed["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
        assert believed["x-forwarded-host"] == "app.example"
        ignored = _as_seen(stranger.get("/public/echo", headers=claims))
        assert ignored["x-forwarded-proto"] == "http"
        assert ignored["x-forwarded-for"] == "127.0.0.2"
        assert ignored["x-forwarded-host"] == own_host

        # The app's redirect to its own address becomes the origin the browser used.
        redirected = proxy.get("/public/x", params={"redirect": "/landing"}, headers=claims)
        assert redirected.headers["location"] == "https://app.example/landing"
        redirected = stranger.get("/public/x", params={"redirect": "/landing"}, headers=claims)
        assert redirected.headers["location"] == f"http://{own_host}/landing"
        # Plain HTTP and no https public_url: no HSTS, whatever a client claims.
        assert "strict-transport-security" not in redirected.headers

        # The sign-in form's Origin check uses the same belief.
        def post(client: httpx.Client, origin: str) -> httpx.Response:
            token = csrf_token(client.get("/.gateway/login", headers=claims).text)
            return client.post("/.gateway/login", headers={**claims, "Origin": origin}, data={
                "username": "alice", "password": "correct horse battery staple", "csrf_token": token, "next": "/"})

        assert post(proxy, "https://app.example").status_code == 303
        assert post(stranger, "https://app.example").status_code == 403
        assert post(stranger, f"http://{own_host}").status_code == 303

    sessions = gateway.cli("sessions", "list").stdout
    assert "203.0.113.9" in sessions and "127.0.0.2" in sessions
