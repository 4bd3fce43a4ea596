"""The gateway's pages in a real browser (Chromium, JavaScript off), against real processes.

Each test walks one journey a person takes and saves a screenshot of every page it meets under
test-output/screenshots/ (each checked not to be blank).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.browser.conftest import UI
from tests.browser.screens import check_page, screenshot
from tests.e2e.harness import PASSWORD, Gateway, free_port, wait_until, write_gateway

pytestmark = pytest.mark.browser


def path_of(page: Any) -> str:
    parts = urlsplit(page.url)
    return parts.path + ("?" + parts.query if parts.query else "")


def focused_id(page: Any) -> str:
    return str(page.evaluate("() => document.activeElement && document.activeElement.id"))


def on_sign_in_form(page: Any) -> bool:
    page.wait_for_load_state()  # a click's navigation may have committed (the URL) before the page loaded
    return urlsplit(page.url).path == "/.gateway/login" and page.get_by_label("Password").count() == 1


def shows_app(page: Any) -> bool:
    """The demo app's page, which shows the X-Forwarded-User it received."""
    page.wait_for_load_state()
    return bool(page.locator("#user").count())


def sign_in(page: Any, user: str, password: str = PASSWORD) -> None:
    """Fill the sign-in form the page shows, as a person would, and send it."""
    assert on_sign_in_form(page), page.url
    if page.get_by_label("User name").get_attribute("readonly") is None:
        page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name=re.compile("Sign in|Continue")).click()


def test_sign_in_lands_on_the_page_first_asked_for(gateway: Gateway, page: Any) -> None:
    response = page.goto(gateway.url + "/reports/q?x=1")
    assert response.status == 200 and on_sign_in_form(page)
    assert parse_qs(urlsplit(page.url).query)["next"] == ["/reports/q?x=1"]
    # The operator's [ui] branding, escaped text in the page and the tab title.
    assert page.locator(".product").inner_text() == UI["product_name"]
    assert page.locator("h1").inner_text() == UI["title"]
    assert page.locator(".footer").inner_text() == UI["footer_text"]
    assert page.title() == f"{UI['title']} · {UI['product_name']}"
    assert focused_id(page) == "username"  # the first empty field
    check_page(page, "01-sign-in")

    sign_in(page, "alice", "not the password at all")
    alert = page.get_by_role("alert")
    assert alert.inner_text() == "Wrong user name or password."
    assert page.get_by_label("User name").input_value() == "alice"
    assert focused_id(page) == "password"  # the name is kept: the first empty field is the password
    assert page.get_by_label("Password").get_attribute("aria-describedby") == "form-error"
    check_page(page, "02-sign-in-error")

    sign_in(page, "alice")
    assert path_of(page) == "/reports/q?x=1"
    assert page.locator("#user").inner_text() == "alice"  # the app saw X-Forwarded-User
    assert page.locator("#roles").inner_text() == "admin"
    screenshot(page, "03-app-signed-in")


def test_sign_out_then_back_stays_signed_out(gateway: Gateway, page: Any) -> None:
    page.goto(gateway.url + "/reports/q?x=1")
    sign_in(page, "alice")
    assert page.locator("#user").inner_text() == "alice"

    page.get_by_role("link", name="Sign out").click()  # the app's own link to the gateway's page
    assert urlsplit(page.url).path == "/.gateway/logout"
    assert "alice" in page.locator("main").inner_text()
    check_page(page, "04-sign-out")
    page.get_by_role("button", name="Sign out").click()
    assert page.locator("h1").inner_text() == "Signed out"
    assert page.get_by_role("status").inner_text() == "You are signed out."
    check_page(page, "05-signed-out")

    # Back through the history: the confirmation page, then the app page. Neither may show the
    # signed-in content again: the app page is asked for anew and the gateway sends the sign-in form.
    page.go_back()
    assert urlsplit(page.url).path == "/.gateway/logout"
    assert page.locator("h1").inner_text() == "Signed out"
    # A page restored from the back/forward cache fires no "load": wait for whichever page shows.
    page.go_back(wait_until="commit")
    wait_until(lambda: shows_app(page) or on_sign_in_form(page), "a page after Back")
    assert not shows_app(page), "the app's signed-in page came back from a cache after signing out"
    assert on_sign_in_form(page)
    assert parse_qs(urlsplit(page.url).query)["next"] == ["/reports/q?x=1"]
    page.reload()
    assert on_sign_in_form(page) and not shows_app(page)
    page.goto(gateway.url + "/reports/q?x=1")
    assert on_sign_in_form(page)


def test_forbidden_page_names_the_user_and_switches_user(gateway: Gateway, page: Any) -> None:
    page.goto(gateway.url + "/admin/?tab=users")
    sign_in(page, "bob")
    assert path_of(page) == "/admin/?tab=users"
    main = page.locator("main").inner_text()
    assert page.locator("h1").inner_text() == "Access denied"
    assert "You are not allowed to open this page." in page.get_by_role("alert").inner_text()
    assert "signed in as bob" in main
    assert page.locator(".meta").inner_text() == "Error 403"
    check_page(page, "06-forbidden")
    # The status is 403 (checked on a fresh load of the same page).
    assert page.reload().status == 403

    page.get_by_role("link", name="Sign in as someone else").click()
    assert page.locator("h1").inner_text() == "Switch user"
    assert "/admin/?tab=users" in page.locator("main").inner_text()
    check_page(page, "07-switch-user")
    page.get_by_role("button", name="Sign out and switch user").click()

    assert on_sign_in_form(page)
    assert parse_qs(urlsplit(page.url).query)["next"] == ["/admin/?tab=users"]
    assert page.get_by_label("User name").input_value() == ""  # bob is gone: a blank form
    sign_in(page, "alice")
    assert path_of(page) == "/admin/?tab=users"
    assert page.locator("#user").inner_text() == "alice"


def test_fresh_rule_shows_the_reauthentication_page(gateway: Gateway, page: Any) -> None:
    page.goto(gateway.url + "/vault/secret")
    sign_in(page, "alice")
    assert page.locator("#user").inner_text() == "alice"
    # /vault/** needs a sign-in at most 1 s old: ask again until the gateway asks for the password.
    wait_until(lambda: page.goto(gateway.url + "/vault/secret") is not None and on_sign_in_form(page),
               "the sign-in to age past the fresh limit", timeout=10)
    query = parse_qs(urlsplit(page.url).query)
    assert query["reauth"] == ["1"] and query["next"] == ["/vault/secret"]
    assert page.locator("h1").inner_text() == "Confirm it is you"
    assert page.get_by_label("User name").input_value() == "alice"
    assert page.get_by_label("User name").get_attribute("readonly") is not None
    assert focused_id(page) == "password"
    assert page.get_by_role("link", name="Sign in as someone else").count() == 1
    check_page(page, "08-reauthenticate")

    sign_in(page, "alice")
    assert path_of(page) == "/vault/secret" and page.locator("#user").inner_text() == "alice"


def test_session_list_page_ends_another_session(gateway: Gateway, browser: Any, page: Any) -> None:
    phone = browser.new_context(java_script_enabled=False, user_agent=(
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36"))
    try:
        other = phone.new_page()
        other.goto(gateway.url + "/")
        sign_in(other, "bob")
        assert other.locator("#user").inner_text() == "bob"

        page.goto(gateway.url + "/.gateway/sessions")
        sign_in(page, "bob")
        assert urlsplit(page.url).path == "/.gateway/sessions"
        sessions = page.locator("li.session")
        assert sessions.count() == 2
        assert page.locator("li.session.current .badge").inner_text() == "This browser"
        assert page.locator("li.session").first.locator(".badge").inner_text() == "This browser"  # listed first
        assert page.locator("li.session:not(.current) .agent").inner_text() == "Chrome on Android"
        check_page(page, "09-sessions")

        page.get_by_role("button", name=re.compile("^End this session")).click()
        assert page.get_by_role("status").inner_text() == "Session ended."
        assert page.locator("li.session").count() == 1
        screenshot(page, "10-sessions-after-ending-one")
        other.goto(gateway.url + "/")
        assert on_sign_in_form(other)  # the phone's session is over
    finally:
        phone.close()


def test_gateway_timeout_page(gateway: Gateway, page: Any) -> None:
    response = page.goto(gateway.url + "/public/slow?sleep=3")  # the upstream read timeout is 1 s
    assert response.status == 504
    assert page.locator("h1").inner_text() == "Application too slow"
    assert page.get_by_role("link", name="Try again").count() == 1
    check_page(page, "11-gateway-timeout")


def test_bad_gateway_page_when_the_app_is_down(tmp_path: Any, page: Any) -> None:
    # An upstream address where nothing listens (the app is stopped), and the default [ui] look.
    gateway = write_gateway(tmp_path / "down", f"http://127.0.0.1:{free_port()}")
    gateway.start()
    try:
        response = page.goto(gateway.url + "/public/page")
        assert response.status == 502
        assert page.locator("h1").inner_text() == "Application unavailable"
        assert page.locator(".product").inner_text() == "Gateway"
        assert page.get_by_role("alert").inner_text() == "The application is not answering."
        check_page(page, "12-bad-gateway")
        # "Try again" reloads the same address.
        page.get_by_role("link", name="Try again").click()
        assert path_of(page) == "/public/page" and page.locator("h1").inner_text() == "Application unavailable"
    finally:
        gateway.stop()


def test_sign_in_page_fits_a_phone(gateway: Gateway, browser: Any) -> None:
    phone = browser.new_context(java_script_enabled=False, viewport={"width": 360, "height": 740},
                                device_scale_factor=2, is_mobile=True, has_touch=True)
    try:
        tab = phone.new_page()
        tab.goto(gateway.url + "/reports/")
        assert on_sign_in_form(tab)
        # Nothing wider than the screen: no sideways scrolling, the button is fully visible.
        assert tab.evaluate("() => document.documentElement.scrollWidth") <= 360
        box = tab.get_by_role("button", name="Sign in").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
        check_page(tab, "13-sign-in-phone")
        tab.emulate_media(color_scheme="dark")
        assert tab.evaluate("() => getComputedStyle(document.body).backgroundColor") == "rgb(23, 27, 35)"
        check_page(tab, "14-sign-in-phone-dark")
    finally:
        phone.close()
