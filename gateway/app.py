"""create_app(settings): the only place that wires the pieces together."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import httpx
from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from gateway.asgi import Gateway
from gateway.audit import Audit
from gateway.auth import views as auth_views
from gateway.auth.accounts import Accounts
from gateway.auth.cookie import SessionCookie
from gateway.auth.csrf import Csrf
from gateway.auth.device import DeviceCookie
from gateway.auth.passwords import Passwords
from gateway.auth.sessions import SessionManager
from gateway.auth.throttle import Throttle
from gateway.auth.user import GatewayAuth, auth_config
from gateway.clock import Clock, system_clock
from gateway.config import Settings
from gateway.errors import GatewayError, ServiceUnavailable, error_for_status, render_error, wants_html
from gateway.metrics import Metrics
from gateway.pages import Pages
from gateway.policy import Policy, PolicyError, load_policy
from gateway.policy.watcher import PolicyWatcher
from gateway.proxy.forward import Upstream
from gateway.proxy.headers import HeaderRules, transport_security_headers
from gateway.services import PolicyState, Services, current_services
from gateway.status import bp as status_bp
from gateway.store.base import StoreUnavailable
from gateway.store.sqlite import SqliteStore

log = logging.getLogger("gateway")

# The gateway's own pages take small forms only; proxied bodies never pass through Quart.
MAX_FORM_BYTES = 64 * 1024


def create_app(
    settings: Settings,
    *,
    policy: Policy | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = system_clock,
) -> Gateway:
    """The whole gateway as one ASGI app. ``clock`` is what every time-based rule reads (session
    timeouts, fresh sign-in, throttling, audit times): tests pass a FakeClock instead of sleeping."""
    if settings.server.secret_key is None:
        raise ValueError("create_app needs settings with a secret key")
    secret = settings.server.secret_key
    store = SqliteStore(settings.store.path, session_cache_ttl=settings.session.cache_ttl)
    passwords = Passwords(settings.passwords)
    audit = Audit(store, clock)
    if policy is None:
        policy = load_policy(settings.policy.dir, case_insensitive=settings.policy.case_insensitive)
    cookie_lifetime = max(settings.session.absolute_timeout, settings.session.persistent_cookie_lifetime)
    services = Services(
        settings=settings,
        store=store,
        passwords=passwords,
        sessions=SessionManager(store, settings.session, audit, clock),
        accounts=Accounts(store, passwords),
        cookie=SessionCookie(secret, settings.session.cookie_name, cookie_lifetime),
        csrf=Csrf(secret),
        policy=PolicyState(policy=policy),
        audit=audit,
        throttle=Throttle(store, clock),
        device=DeviceCookie(secret, settings.session.device_cookie_name),
        pages=Pages(settings.ui),
        metrics=Metrics(),
    )

    app = Quart("gateway", static_folder="static", static_url_path="/.gateway/static")
    app.secret_key = secret
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_FORM_BYTES,
        PROVIDE_AUTOMATIC_OPTIONS=False,
        # Quart-Auth's duration is the Max-Age of a "keep me signed in" cookie; without the box the
        # cookie has no Max-Age and ends with the browser. The server-side limits apply either way.
        **auth_config(settings.session.cookie_name, settings.session.secure_cookie,
                      settings.session.persistent_cookie_lifetime),
    )
    app.extensions["gateway"] = services
    GatewayAuth(app)
    app.register_blueprint(auth_views.bp)
    app.register_blueprint(status_bp)

    rules = HeaderRules(
        user_header=settings.headers.user.encode(),
        roles_header=settings.headers.roles.encode(),
        cookie_names=frozenset(name.encode() for name in settings.session.cookie_names),
        upstream_host=urlsplit(settings.upstream.url).netloc.encode(),
        preserve_host=settings.upstream.preserve_host,
        trusted_proxies=settings.server.trusted_proxies,
        response_headers=transport_security_headers(settings.server),
        strip_headers=tuple(name.encode() for name in settings.proxy.strip_headers),
    )
    gateway = Gateway(app, services, rules)
    gateway.clock = clock

    def policy_loaded(new: Policy) -> None:
        services.policy = PolicyState(policy=new)
        services.metrics.policy_reloaded(ok=True)
        log.info("policy reloaded: %d rule(s) from %d file(s)", len(new.rules), len(new.files))
        audit.record("policy.reloaded", rules=len(new.rules), files=len(new.files))
        for warning in new.warnings:
            log.warning("policy: %s", warning)

    def policy_failed(error: PolicyError) -> None:
        services.policy = PolicyState(policy=services.policy.policy, problems=tuple(str(p) for p in error.problems))
        services.metrics.policy_reloaded(ok=False)
        audit.record("policy.rejected", problems=[str(p) for p in error.problems])
        for problem in error.problems:
            log.error("policy not reloaded, the last good policy stays in force: %s", problem)

    watcher = PolicyWatcher(settings.policy.dir, case_insensitive=settings.policy.case_insensitive,
                            on_loaded=policy_loaded, on_failed=policy_failed)

    @app.before_serving
    async def open_resources() -> None:
        await store.open()
        audit.start()
        services.sessions.idle_clock.start()
        await services.sessions.purge_expired()
        await passwords.prepare()
        gateway.upstream = Upstream(settings.upstream, transport)
        for warning in (*settings.warnings, *(f"policy: {w}" for w in policy.warnings)):
            log.warning("%s", warning)
        watcher.start()

    @app.after_serving
    async def close_resources() -> None:
        await watcher.stop()
        if gateway.upstream is not None:
            await gateway.upstream.aclose()
        await services.sessions.idle_clock.stop()
        await audit.stop()
        await store.close()
        services.metrics.close()
        gateway.access.flush()

    every_page = [(name.decode(), value.decode()) for name, value in (*services.pages.headers, *rules.response_headers)]

    @app.after_request
    async def page_headers(response: Response) -> Response:
        for name, value in every_page:
            response.headers.setdefault(name, value)
        return response

    @app.errorhandler(GatewayError)
    async def gateway_error(error: GatewayError) -> Response:
        return _error_response(error)

    @app.errorhandler(StoreUnavailable)
    async def store_unavailable(error: StoreUnavailable) -> Response:
        # Busy past the busy timeout or unreadable: say so (503), never guess, never a bare 500.
        log.error("store unavailable: %s", error)
        return _error_response(ServiceUnavailable("The gateway's store is busy. Try again in a moment."))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        return _error_response(error_for_status(error.code or 500))

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        log.exception("unexpected error on a gateway page")
        return _error_response(GatewayError())

    return gateway


def _error_response(error: GatewayError) -> Response:
    services = current_services()
    status, headers, body = render_error(error, wants_html(request.headers.get("Accept")), pages=services.pages)
    response = Response(body, status=status)
    for name, value in headers:
        if name != b"content-length":
            response.headers[name.decode()] = value.decode()
    return response
