"""The gateway's sign-in, sign-out and whoami endpoints."""

from __future__ import annotations

import logging

from quart import Blueprint, Response, jsonify, request
from quart_auth import current_user, login_user, logout_user

from gateway.auth.accounts import USER_NAME
from gateway.auth.csrf import origin_allowed
from gateway.auth.redirects import safe_next
from gateway.auth.sessions import ActiveSession, hash_session_id, short_id
from gateway.auth.user import GatewayUser
from gateway.errors import Forbidden
from gateway.pages import render_page
from gateway.proxy.headers import client_address, public_origin
from gateway.services import Services, current_services

log = logging.getLogger("gateway.auth")
bp = Blueprint("auth", __name__)

GENERIC_FAILURE = "Wrong user name or password."
FORM_EXPIRED = "The form expired. Please try again."


async def _active() -> ActiveSession | None:
    user = current_user._get_current_object()  # type: ignore[attr-defined]
    assert isinstance(user, GatewayUser)
    return await user.session()


def _client(services: Services) -> str:
    client = request.scope.get("client")
    return client_address(client[0] if client else None, request.headers.getlist("X-Forwarded-For"),
                          services.settings.server.trusted_proxies)


def _page(template: str, status: int = 200, **context: object) -> Response:
    """Render a form page carrying a CSRF token, setting the CSRF cookie when the browser has none."""
    services = current_services()
    name = services.settings.session.csrf_cookie_name
    binding = request.cookies.get(name)
    fresh = not binding or len(binding) > 128
    if fresh:
        binding = services.csrf.new_binding()
    assert binding is not None
    response = Response(render_page(template, csrf_token=services.csrf.token_for(binding), **context),
                        status=status, content_type="text/html; charset=utf-8")
    if fresh:
        response.set_cookie(name, binding, httponly=True, samesite="Lax", path="/",
                            secure=services.settings.session.secure_cookie)
    return response


def _post_allowed(form_token: str | None) -> bool:
    services = current_services()
    client = request.scope.get("client")
    expected = public_origin(
        public_url=services.settings.server.public_url, scheme=request.scheme, host=request.headers.get("Host", ""),
        peer=client[0] if client else None, forwarded_proto=request.headers.get("X-Forwarded-Proto"),
        forwarded_host=request.headers.get("X-Forwarded-Host"), networks=services.settings.server.trusted_proxies,
    )
    if not origin_allowed(request.headers.get("Origin"), expected):
        raise Forbidden("Cross-site form submission refused.")
    binding = request.cookies.get(services.settings.session.csrf_cookie_name)
    return services.csrf.check(binding, form_token)


@bp.get("/.gateway/login")
async def login_form() -> Response:
    return _page("login.html", title="Sign in", next=safe_next(request.args.get("next")), username="", error=None)


@bp.post("/.gateway/login")
async def login_submit() -> Response:
    services = current_services()
    form = await request.form
    next_path = safe_next(form.get("next"))
    username = form.get("username", "")
    password = form.get("password", "")
    shown_name = username if USER_NAME.fullmatch(username) else ""
    if not _post_allowed(form.get("csrf_token")):
        return _page("login.html", 400, title="Sign in", next=next_path, username=shown_name, error=FORM_EXPIRED)
    if not username or not password:
        return _page("login.html", 400, title="Sign in", next=next_path, username=shown_name,
                     error="Enter your user name and password.")

    user = await services.store.get_user(username) if USER_NAME.fullmatch(username) else None
    # Always one argon2 verification: a dummy one for unknown names, the real one for disabled
    # accounts; the answer is the same generic failure for all three.
    result = await services.passwords.verify(user.password_hash if user else None, password)
    client = _client(services)
    if user is None or user.disabled or not result.ok:
        reason = "unknown user" if user is None else "disabled" if user.disabled else "wrong password"
        log.info("sign-in failed user=%r client=%s reason=%s", shown_name, client, reason)
        return _page("login.html", 401, title="Sign in", next=next_path, username=shown_name, error=GENERIC_FAILURE)
    if result.needs_rehash:
        await services.store.set_password_hash(user.name, await services.passwords.hash(password))

    # A new session id at every sign-in (no fixation); the browser's previous session ends.
    previous = current_user.auth_id
    if previous:
        await services.sessions.end(previous)
    session_id = await services.sessions.start(user, client, request.headers.get("User-Agent", ""))
    login_user(GatewayUser(session_id))
    log.info("sign-in user=%s client=%s session=%s", user.name, client, short_id(hash_session_id(session_id)))
    return Response("", status=303, headers={"Location": next_path})


@bp.get("/.gateway/logout")
async def logout_form() -> Response:
    active = await _active()
    return _page("logout.html", title="Sign out" if active else "Signed out",
                 user=active.principal.user if active else None)


@bp.post("/.gateway/logout")
async def logout_submit() -> Response:
    services = current_services()
    form = await request.form
    active = await _active()
    if not _post_allowed(form.get("csrf_token")):
        return _page("logout.html", 400, title="Sign out", user=active.principal.user if active else None)
    if active is not None and current_user.auth_id:
        await services.sessions.end(current_user.auth_id)
        log.info("sign-out user=%s session=%s", active.principal.user, short_id(active.id_hash))
    logout_user()  # clears the cookie; the row is already gone, so a copy of the cookie is dead too
    return _page("logout.html", title="Signed out", user=None)


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
    })
