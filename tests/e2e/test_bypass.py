"""Path tricks from public advisories, sent byte for byte: each is refused (400) or decided on the
same canonical path the app then receives. None may reach /admin or /internal without the right."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.e2e.harness import Gateway, raw_get, sign_in

ADMIN_TRICKS = [
    b"/admin", b"/admin/", b"/admin/x", b"//admin/x", b"/./admin/x", b"/public/../admin/x",
    b"/public/%2e%2e/admin/x", b"/public/%2E%2E/admin/x", b"/public/.%2e/admin/x", b"/public/%2e./admin/x",
    b"/public/..%2fadmin/x", b"/public/..%2Fadmin/x", b"/public/..%5cadmin/x", b"/public\\..\\admin/x",
    b"/public/%252e%252e/admin/x", b"/public/%25%32%65%25%32%65/admin/x", b"/%61dmin/x", b"/adm%69n/x",
    b"/admin;x=y", b"/admin;/x", b"/public/..;/admin/x", b"/%3Badmin/x", b"/public/%3B/../admin/x",
    b"/admin%00/x", b"/admin%00", b"/public/%00/../admin", b"/admin%2fx", b"/admin%5cx", b"/admin/%2e%2e%2fpublic",
    b"/admin#/public", b"/public/%c0%ae%c0%ae/admin", b"/public/%ef%bc%8e%ef%bc%8e/admin",
    b"http://127.0.0.1/admin/x", b"HTTP://127.0.0.1/public/../admin/x", b"/public/%2e%2e%2fadmin",
    b"/public/..%u002fadmin", b"/public/%%32%65%%32%65/admin", b"/admin/./", b"/admin/x/../",
    b"/internal/../admin/x",
]


@pytest.mark.parametrize("target", ADMIN_TRICKS, ids=lambda t: t.decode("latin-1"))
def test_no_trick_reaches_admin_anonymously(gateway: Gateway, target: bytes) -> None:
    status, _, _ = raw_get(gateway.port, target, b"Accept: application/json\r\n")
    assert status in (400, 401), status


@pytest.mark.parametrize("target", ADMIN_TRICKS, ids=lambda t: t.decode("latin-1"))
def test_no_trick_reaches_admin_as_non_admin(gateway: Gateway, bob: httpx.Client, target: bytes) -> None:
    cookie = b"Cookie: gateway_session=" + bob.cookies["gateway_session"].encode() + b"\r\n"
    status, _, _ = raw_get(gateway.port, target, cookie)
    assert status in (400, 403), status


INTERNAL_TRICKS = [b"/internal/x", b"/public/../internal/x", b"//internal", b"/internal", b"/./internal/",
                   b"/public/%2e%2e/internal/"]


@pytest.mark.parametrize("target", INTERNAL_TRICKS, ids=lambda t: t.decode("latin-1"))
def test_deny_rule_holds_for_admins(gateway: Gateway, alice: httpx.Client, target: bytes) -> None:
    cookie = b"Cookie: gateway_session=" + alice.cookies["gateway_session"].encode() + b"\r\n"
    status, _, _ = raw_get(gateway.port, target, cookie)
    assert status in (400, 403)


FORWARDED_AS = [
    (b"/public/./a//b", "/public/a/b"),
    (b"/public/x/../y", "/public/y"),
    (b"/public/%7euser", "/public/~user"),
    (b"/public/caf%c3%a9", "/public/caf%C3%A9"),
    (b"/public/a%20b?q=%2F..%2F&x", "/public/a%20b?q=%2F..%2F&x"),
    (b"/public/100%25", "/public/100%25"),
    (b"http://127.0.0.1/public/abs?q=1", "/public/abs?q=1"),
    (b"/public/x/", "/public/x/"),
]


@pytest.mark.parametrize(("target", "seen"), FORWARDED_AS, ids=lambda v: v.decode() if isinstance(v, bytes) else v)
def test_the_app_receives_exactly_the_canonical_path(gateway: Gateway, target: bytes, seen: str) -> None:
    status, _, body = raw_get(gateway.port, target)
    assert status == 200
    assert json.loads(body)["path"] == seen


def test_reject_is_400_with_a_clear_body(gateway: Gateway) -> None:
    status, headers, body = raw_get(gateway.port, b"/a/%2e%2e/%2e%2e/etc/passwd", b"Accept: application/json\r\n")
    assert status == 400
    assert json.loads(body)["error"] == "bad_request"
    status, headers, body = raw_get(gateway.port, b"/a%2fb", b"Accept: text/html\r\n")
    assert status == 400 and "text/html" in headers["content-type"]


def test_methods_never_fall_through_to_a_less_specific_rule(carol: httpx.Client) -> None:
    assert carol.get("/reports/q1").status_code == 200
    assert carol.head("/reports/q1").status_code == 200
    # /reports/** covers GET only; POST is denied, not handed to the "/**" authenticated rule.
    assert carol.post("/reports/q1", content=b"x").status_code == 403


def test_default_deny_and_contract_statuses(make_gateway: Any) -> None:
    gateway = make_gateway(policy="rules:\n  - paths: [\"/open/**\"]\n    allow: anyone\n", users={"zed": "staff"})
    with gateway.client() as client:
        assert client.get("/open/x").status_code == 200
        assert client.get("/elsewhere").status_code == 403  # no rule: nobody could be allowed
        assert client.get("/elsewhere", headers={"Accept": "text/html"}).status_code == 403


def test_case_insensitive_option(make_gateway: Any) -> None:
    gateway = make_gateway(settings={"policy": {"case_insensitive": True}}, users={"zed": "staff"})
    for target in (b"/ADMIN/x", b"/Admin", b"/iNtErNaL/x", b"/PUBLIC/../ADMIN", b"/adm%C4%B1n/x", b"/%C4%B1nternal/x",
                   b"/admin.", b"/admin%20", b"/ADMIN./x", b"/internal.", b"/intern~1/", b"/admin::$DATA"):
        status, _, _ = raw_get(gateway.port, target, b"Accept: application/json\r\n")
        assert status in (400, 401, 403), target
    status, _, _ = raw_get(gateway.port, b"/PUBLIC/x")
    assert status == 200
    with gateway.client() as zed:
        assert sign_in(zed, "zed").status_code == 303
        cookie = b"Cookie: gateway_session=" + zed.cookies["gateway_session"].encode() + b"\r\n"
        for target in (b"/adm%C4%B1n/x", b"/%C4%B1nternal/x", b"/admin.", b"/ADMIN%20/x", b"/ADMINI~1/", b"/Admin/x"):
            status, _, _ = raw_get(gateway.port, target, cookie)
            assert status in (400, 403), target


def test_path_params_option_decides_without_parameters(make_gateway: Any) -> None:
    gateway = make_gateway(settings={"policy": {"allow_path_params": True}})
    status, _, body = raw_get(gateway.port, b"/public/page;jsessionid=abc")
    assert status == 200
    assert json.loads(body)["path"] == "/public/page;jsessionid=abc"
    for target in (b"/public/..;/admin/x", b"/admin;jsessionid=x", b"/public/%3B/../admin"):
        status, _, _ = raw_get(gateway.port, target, b"Accept: application/json\r\n")
        assert status in (400, 401), target


def test_over_long_targets_get_414(gateway: Gateway) -> None:
    for target in (b"/public/" + b"a" * 8_200, b"/public?q=" + b"a" * 9_000, b"/public/" + b"a" * 40_000):
        status, _, body = raw_get(gateway.port, target, b"Accept: application/json\r\n")
        assert status == 414, target[:20]
        assert json.loads(body)["error"] == "uri_too_long"
    # Beyond server.max_header_size (64k) the server refuses the request line before the gateway sees it.
    for target in (b"/public/" + b"a" * 70_000, b"/public?q=" + b"a" * 66_000):
        status, _, _ = raw_get(gateway.port, target, b"Accept: application/json\r\n")
        assert status == 414, target[:20]
    status, _, _ = raw_get(gateway.port, b"/public/" + b"a" * 7_000)
    assert status == 200


@pytest.mark.parametrize("method", [b"get", b"head", b"Get", b"G\xc3\xa9T"])
def test_methods_are_case_sensitive(gateway: Gateway, method: bytes) -> None:
    status, _, _ = raw_get(gateway.port, b"/public/x", method=method)
    assert status in (400, 501)


def test_method_override_must_be_allowed_too(carol: httpx.Client) -> None:
    assert carol.get("/reports/x", headers={"X-HTTP-Method-Override": "DELETE"}).status_code == 403
    assert carol.get("/reports/x", headers={"X_Method_Override": "PUT"}).status_code == 403
    assert carol.get("/reports/x", headers={"X-HTTP-Method": "HEAD"}).status_code == 200
