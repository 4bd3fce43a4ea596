"""The gateway's own pages: sign-in, sign-out, whoami, the user's sessions and account."""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable

from quart import Blueprint, Response, jsonify, request
from quart_auth import current_user, login_user, logout_user

from gateway.auth.accounts import USER_NAME
from gateway.auth.csrf import origin_allowed
from gateway.auth.device import LIFETIME as DEVICE_LIFETIME
from gateway.auth.passwords import WeakPassword, check_strength
from gateway.auth.sessions import ActiveSession, hash_session_id, short_id
from gateway.errors import Forbidden, Unauthorized
from gateway.http import wants_html
from gateway.http.redirects import LOGIN, safe_next, sign_in_url, switch_user_url
from gateway.services import Services, current_services
from gateway.web.user import GatewayUser, note_user, request_client

log = logging.getLogger("gateway.auth")
bp = Blueprint("auth", __name__)

GENERIC_FAILURE = "Wrong user name or password."
FORM_EXPIRED = "The form expired. Please try again."


async def _active() -> ActiveSession | None:
    user = current_user._get_current_object()  # type: ignore[attr-defined]
    assert isinstance(user, GatewayUser)
    return await user.session()


def _page(template: str, status: int = 200, **context: object) -> Response:
    """Render a form page carrying a CSRF token, setting the CSRF cookie when the browser has none."""
    services = current_services()
    name = services.settings.session.csrf_cookie_name
    binding = request.cookies.get(name)
    fresh = not binding or len(binding) > 128
    if fresh:
        binding = services.csrf.new_binding()
    assert binding is not None
    response = Response(services.pages.render(template, csrf_token=services.csrf.token_for(binding), **context),
                        status=status, content_type="text/html; charset=utf-8")
    if fresh:
        response.set_cookie(name, binding, httponly=True, samesite="Lax", path="/",
                            secure=services.settings.session.secure_cookie)
    return response


def _post_allowed(form_token: str | None) -> bool:
    """Refuse cross-site posts outright (403); False when the CSRF token does not match."""
    services = current_services()
    if not origin_allowed(request.headers.get("Origin"), services.proxies.origin_of(request.scope)):
        raise Forbidden("Cross-site form submission refused.")
    binding = request.cookies.get(services.settings.session.csrf_cookie_name)
    return services.csrf.check(binding, form_token)


def _login_page(status: int, *, next_path: str, username: str, error: str | None = None,
                notice: str | None = None, reauth: bool = False) -> Response:
    title = "Confirm it is you" if reauth else current_services().settings.ui.title
    return _page("login.html", status, title=title, next=next_path, username=username, error=error, notice=notice,
                 reauth=reauth, switch_url=switch_user_url(next_path))


def _throttled(wait: float, page: Callable[[str], Response]) -> Response:
    """429 with Retry-After: the same answer whatever the password, which was not even looked at."""
    seconds = max(1, math.ceil(wait))
    response = page(f"Too many attempts. Wait {seconds} seconds, then try again.")
    response.headers["Retry-After"] = str(seconds)
    return response


async def _require_session() -> ActiveSession:
    active = await _active()
    if active is None:
        raise Unauthorized()
    return active


# --- sign-in


@bp.get("/.gateway/login")
async def login_form() -> Response:
    active = await _active()
    reauth = request.args.get("reauth") == "1" and active is not None
    # A session too old for a `fresh` rule comes back here: the name is known, only the password is asked.
    return _login_page(200, next_path=safe_next(request.args.get("next")),
                       username=active.principal.user if active else "",
                       notice="Enter your password again to continue." if reauth else None, reauth=reauth)


@bp.post("/.gateway/login")
async def login_submit() -> Response:
    services = current_services()
    form = await request.form
    next_path = safe_next(form.get("next"))
    username = form.get("username", "")
    password = form.get("password", "")
    remember = form.get("remember") == "1"
    shown_name = username if USER_NAME.fullmatch(username) else ""
    if not _post_allowed(form.get("csrf_token")):
        return _login_page(400, next_path=next_path, username=shown_name, error=FORM_EXPIRED)
    if not username or not password:
        return _login_page(400, next_path=next_path, username=shown_name, error="Enter your user name and password.")

    client = request_client()
    user = await services.stores.users.get_user(username) if shown_name else None
    verdict = await services.password_check.check(username if shown_name else "(invalid)", user, password,
                                                  client=client, device_cookie=request.cookies.get(services.device.name))
    # An unknown name is often a password typed into the wrong field: keep only a fingerprint.
    named = {"user": user.name} if user else {"attempted": _fingerprint(username)}
    if verdict.wait > 0:
        services.audit.record_aggregated(f"throttled {list(verdict.keys)}", "signin.throttled", client=client,
                                         retry_after=math.ceil(verdict.wait), **named)
        services.metrics.signins["throttled"].inc()
        services.metrics.throttled["signin"].inc()
        return _throttled(verdict.wait,
                          lambda message: _login_page(429, next_path=next_path, username=shown_name, error=message))
    # The same generic failure for an unknown name, a disabled account and a wrong password.
    if user is None or not verdict.ok:
        reason = "unknown user" if user is None else "disabled" if user.disabled else "wrong password"
        services.audit.record("signin.failure", client=client, reason=reason, **named)
        services.metrics.signins["failure"].inc()
        return _login_page(401, next_path=next_path, username=shown_name, error=GENERIC_FAILURE)
    password_hash = user.password_hash
    if verdict.needs_rehash:
        password_hash = await services.passwords.hash(password)
        await services.stores.users.set_password_hash(user.name, password_hash)

    # A new session id at every sign-in (no fixation); the browser's previous session ends.
    previous = current_user.auth_id
    if previous:
        await services.sessions.end(previous)
    session_id = await services.sessions.start(user, client, request.headers.get("User-Agent", ""), persistent=remember)
    login_user(GatewayUser(session_id), remember=remember)
    services.audit.record("signin.success", user=user.name, client=client,
                          session=short_id(hash_session_id(session_id)), persistent=remember)
    services.metrics.signins["success"].inc()
    note_user(user.name)
    response = Response("", status=303, headers={"Location": next_path})
    if verdict.device is None:
        _set_device_cookie(response, services, user.name, password_hash)
    return response


def _fingerprint(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]


def _set_device_cookie(response: Response, services: Services, user_name: str, password_hash: str) -> None:
    response.set_cookie(services.device.name, services.device.issue(user_name, password_hash), max_age=DEVICE_LIFETIME,
                        httponly=True, samesite="Lax", path="/", secure=services.settings.session.secure_cookie)


# --- sign-out


def _switch_target(value: str | None) -> str | None:
    """The page to sign in again for, when the sign-out page was opened to switch user (403 page)."""
    return None if value is None else safe_next(value)


def _logout_page(status: int, *, user: str | None, switch_to: str | None, error: str | None = None) -> Response:
    title = "Signed out" if user is None else "Sign out" if switch_to is None else "Switch user"
    login_url = LOGIN if switch_to is None else sign_in_url(switch_to)
    return _page("logout.html", status, title=title, user=user, next=switch_to, error=error, login_url=login_url)


@bp.get("/.gateway/logout")
async def logout_form() -> Response:
    active = await _active()
    return _logout_page(200, user=active.principal.user if active else None,
                        switch_to=_switch_target(request.args.get("next")))


@bp.post("/.gateway/logout")
async def logout_submit() -> Response:
    services = current_services()
    form = await request.form
    active = await _active()
    switch_to = _switch_target(form.get("next"))
    if not _post_allowed(form.get("csrf_token")):
        return _logout_page(400, user=active.principal.user if active else None, switch_to=switch_to, error=FORM_EXPIRED)
    if active is not None and current_user.auth_id:
        await services.sessions.end(current_user.auth_id)
        services.audit.record("signout", user=active.principal.user, client=request_client(),
                              session=short_id(active.id_hash))
    logout_user()  # clears the cookie; the row is already gone, so a copy of the cookie is dead too
    if switch_to is not None:
        # Switching user: straight on to the sign-in form, then back to the page that was refused.
        response = Response("", status=303, headers={"Location": sign_in_url(switch_to)})
    else:
        response = _logout_page(200, user=None, switch_to=None)
    # The app's pages this browser still holds (HTTP cache, back/forward cache) show the signed-in
    # user: drop them, so Back after signing out asks the gateway again and meets the sign-in form.
    response.headers["Clear-Site-Data"] = '"cache"'
    return response


# --- whoami


@bp.get("/.gateway/whoami")
async def whoami() -> Response:
    active = await _active()
    if active is None:
        response = jsonify({"error": "unauthorized", "message": "Sign in to continue."})
        response.status_code = 401
        return response
    return jsonify({
        "user": active.principal.user,
        "roles": sorted(active.principal.roles),
        "session": short_id(active.id_hash),
        "signed_in_at": active.record.auth_time,
        "last_seen": active.record.last_seen,
        "persistent": active.record.persistent,
    })


# --- the user's own sessions


def _needs_sign_in(path: str) -> Response:
    if wants_html(request.headers.get("Accept")):
        return Response("", status=302, headers={"Location": sign_in_url(path)})
    raise Unauthorized()


async def _sessions_page(active: ActiveSession, status: int = 200, notice: str | None = None) -> Response:
    services = current_services()
    sessions = await services.sessions.live_sessions(active.record.user_id)
    # This browser first, then the most recently used.
    records = sorted((s.session for s in sessions), key=lambda s: (s.id_hash != active.id_hash, -s.last_seen))
    rows = [{"id": short_id(s.id_hash), "current": s.id_hash == active.id_hash, "created": s.created_at,
             "last_seen": s.last_seen, "client": s.client, "user_agent": s.user_agent} for s in records]
    return _page("sessions.html", status, title="Your sessions", user=active.principal.user, sessions=rows,
                 notice=notice)


@bp.get("/.gateway/sessions")
async def sessions_list() -> Response:
    active = await _active()
    if active is None:
        return _needs_sign_in("/.gateway/sessions")
    return await _sessions_page(active)


@bp.post("/.gateway/sessions")
async def sessions_end() -> Response:
    services = current_services()
    active = await _require_session()
    form = await request.form
    if not _post_allowed(form.get("csrf_token")):
        return await _sessions_page(active, 400, FORM_EXPIRED)
    target = form.get("session", "")
    if target == "others":
        ended = await services.stores.sessions.delete_user_sessions(active.record.user_id, keep=active.id_hash)
        services.audit.record("session.revoked", user=active.principal.user, client=request_client(),
                              by="user", scope="others", count=ended)
        return await _sessions_page(active, notice=f"{ended} other session(s) ended.")
    # Only the user's own sessions can be named, by the short id the page shows.
    own = {short_id(s.session.id_hash): s.session for s in await services.sessions.live_sessions(active.record.user_id)}
    chosen = own.get(target)
    if chosen is None or chosen.id_hash == active.id_hash:
        return await _sessions_page(active, 400, "No such other session.")
    await services.stores.sessions.delete_session(chosen.id_hash)
    services.audit.record("session.revoked", user=active.principal.user, client=request_client(), by="user",
                          session=target)
    return await _sessions_page(active, notice="Session ended.")


# --- the user's account: change password


@bp.get("/.gateway/account")
async def account_form() -> Response:
    active = await _active()
    if active is None:
        return _needs_sign_in("/.gateway/account")
    return _page("account.html", title="Your account", user=active.principal.user, error=None, notice=None)


@bp.post("/.gateway/account")
async def account_submit() -> Response:
    services = current_services()
    active = await _require_session()
    user_name = active.principal.user
    form = await request.form

    def again(status: int, error: str) -> Response:
        return _page("account.html", status, title="Your account", user=user_name, error=error, notice=None)

    if not _post_allowed(form.get("csrf_token")):
        return again(400, FORM_EXPIRED)
    current, new, repeat = form.get("current_password", ""), form.get("new_password", ""), form.get("repeat_password", "")
    if new != repeat:
        return again(400, "The new passwords do not match.")
    try:
        check_strength(new, user_name)
    except WeakPassword as exc:
        return again(400, str(exc).capitalize() + ".")
    client = request_client()
    user = await services.stores.users.get_user(user_name)
    verdict = await services.password_check.check(user_name, user, current, client=client,
                                                  device_cookie=request.cookies.get(services.device.name))
    if verdict.wait > 0:
        services.audit.record_aggregated(f"throttled {list(verdict.keys)}", "password.throttled", user=user_name,
                                         client=client, retry_after=math.ceil(verdict.wait))
        services.metrics.throttled["password_change"].inc()
        return _throttled(verdict.wait, lambda message: again(429, message))
    if user is None or not verdict.ok:
        services.audit.record("password.change_failed", user=user_name, client=client, reason="wrong current password")
        return again(401, "The current password is wrong.")
    change = await services.accounts.set_password(user.name, new, keep=active.id_hash)
    ended, new_hash = change.sessions_ended, change.password_hash
    # This browser stays signed in, under a new session id: a copy of the old cookie (the reason
    # people change passwords) dies with the other sessions.
    await services.stores.sessions.delete_session(active.id_hash)
    session_id = await services.sessions.start(user, client, request.headers.get("User-Agent", ""),
                                               persistent=active.record.persistent)
    login_user(GatewayUser(session_id), remember=active.record.persistent)
    services.audit.record("user.password_changed", user=user.name, client=client, by="self", sessions_ended=ended,
                          session=short_id(hash_session_id(session_id)))
    response = _page("account.html", title="Your account", user=user_name, error=None,
                     notice=f"Password changed. {ended} other session(s) ended.")
    _set_device_cookie(response, services, user.name, new_hash)
    return response
