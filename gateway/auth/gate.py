"""THE admission path, shared by every way in (HTTP requests, WebSocket handshakes, and later the
forward-auth endpoints):

- identify: cookie -> live session -> Principal (auth/identify.py);
- decide: the policy in force, with any tunnelled method (X-HTTP-Method-Override) -> Outcome;
- record: the access line's user and decision (its metrics follow from them), and a denial's
  audit event, once;
- refuse: by raising the GatewayError to answer with; http/refuse.py turns it into the answer.

``Gate.admit`` returns an ``Admission`` for an allowed request; nothing else decides who may pass.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.auth.csrf import origin_allowed
from gateway.auth.identify import Identifier, Identity
from gateway.clock import Clock, system_clock
from gateway.errors import Forbidden, MfaRequired, ReauthenticationRequired, Unauthorized
from gateway.http import RawHeaders, Scope, TrustedProxies, first_value, method_overrides
from gateway.observe import ALLOW, DENY, LOGIN, REAUTH, Audit, Exchange
from gateway.policy import CanonicalPath, Decision, Outcome, Policy, Principal, decide_tunnelled
from gateway.policy.channel import Follower

__all__ = ["DECISION_LABEL", "Admission", "Gate", "Recheck", "lost_access"]

# A missing second factor is counted with the sign-ins asked for: one more step of authentication.
DECISION_LABEL = {Outcome.ALLOW: ALLOW, Outcome.LOGIN: LOGIN, Outcome.REAUTH: REAUTH, Outcome.MFA: LOGIN,
                  Outcome.FORBIDDEN: DENY}

# Why an open connection (a WebSocket) must close now, or None while it may stay open; raises when
# the session store cannot say.
Recheck = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Admission:
    """An allowed request: who it is (None: anonymous) and the decision that let it pass."""

    identity: Identity
    decision: Decision

    @property
    def principal(self) -> Principal | None:
        return self.identity.principal


def lost_access(decision: Decision, now: Principal | None, then: Principal | None) -> str | None:
    """Why an open connection must close (pure), or None while it may stay open.

    ``then`` is the principal the upstream was told about when it opened. Once the identity headers
    it was given are no longer true (the session ended, or the roles changed) the connection closes
    even if the policy would still allow it: the client reconnects and the app hears the truth.
    """
    if then is not None:
        if now is None:
            return "session ended"
        if now.user != then.user or now.roles != then.roles:
            return "roles changed"
    if not decision.allowed:
        return "no longer allowed"
    return None


class Gate:
    def __init__(self, identifier: Identifier, policy: Callable[[], Policy], audit: Audit, proxies: TrustedProxies,
                 *, secure_cookie: bool, clock: Clock = system_clock, follower: Follower | None = None) -> None:
        self.identifier = identifier
        # A worker of several: the policy the supervisor published is taken before each admission
        # (one shared-memory read), so no request is admitted by a version already replaced.
        self._follower = follower
        self._clock = clock  # what "fresh" rules are judged by (tests move it instead of sleeping)
        self._policy = policy  # read once per decision: one request, one whole policy
        self._audit = audit
        self._proxies = proxies
        secure = "; Secure" if secure_cookie else ""
        # A dead or forged cookie: the browser is told to drop it.
        self._clear_cookie = (b"set-cookie", (f"{identifier.cookie.name}=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; "
                                              f"Max-Age=0; Path=/; HttpOnly; SameSite=Lax{secure}").encode())

    def decide(self, principal: Principal | None, method: str, headers: RawHeaders, path: str,
               policy: Policy | None = None) -> Decision:
        """The policy's word; the app may act on a tunnelled method, which must be allowed as well."""
        return decide_tunnelled(self._policy() if policy is None else policy, principal, method, method_overrides(headers), path,
                                now=self._clock())

    async def admit(self, scope: Scope, canonical: CanonicalPath, exchange: Exchange, *, method: str,
                    websocket: bool = False) -> Admission:
        """Identify, decide and record; raises Unauthorized (sign in), ReauthenticationRequired or
        Forbidden, to be answered by http/refuse.py, when the request may not pass."""
        headers: RawHeaders = scope["headers"]
        identity = await self.identifier.identify(headers, exchange.client)
        if websocket and identity.session is not None:
            # Cross-site WebSocket hijacking: a page on another site opening a socket here would ride
            # on the user's cookie (browsers apply no CORS to WebSockets). Browsers always send Origin
            # on a handshake; clients that are not browsers send none and are not affected.
            origin = first_value(headers, b"origin")
            if origin is not None and not origin_allowed(origin.decode("latin-1"), self._proxies.origin_of(scope)):
                raise Forbidden("A WebSocket from another site may not use this session.")
        principal = identity.principal
        if principal is not None:
            exchange.user = principal.user
        if self._follower is not None and self._follower.behind():
            await self._follower.catch_up()
        policy = self._policy()  # once: the decision and its audit line name the same version
        decision = self.decide(principal, method, headers, canonical.decision, policy)
        exchange.decision = DECISION_LABEL[decision.outcome]
        if decision.outcome is Outcome.LOGIN or decision.outcome is Outcome.REAUTH:
            clear = [self._clear_cookie] if identity.had_cookie and identity.session is None else []
            raise (ReauthenticationRequired if decision.outcome is Outcome.REAUTH else Unauthorized)(headers=clear)
        if decision.outcome is Outcome.MFA:
            raise MfaRequired()
        if decision.outcome is not Outcome.ALLOW:
            user = principal.user if principal else None
            shown = "WEBSOCKET" if websocket else method
            self._audit.record_aggregated(
                f"denied {exchange.client} {user} {shown} {canonical.decision}",
                "access.denied", user=user, client=exchange.client, method=method,
                **({"websocket": True} if websocket else {}),
                path=canonical.decision, reason=decision.reason,
                rule=f"{decision.rule.file}:{decision.rule.line}" if decision.rule else None,
                policy=policy.version,
            )
            raise Forbidden(user=user)
        return Admission(identity, decision)

    def recheck(self, admission: Admission, canonical: CanonicalPath, headers: RawHeaders, method: str, *,
                client: str, user_agent: str) -> Recheck:
        """For a connection that stays open: asks again whether it may (its session, the policy now)."""

        async def why_close() -> str | None:
            now = await self.identifier.still_signed_in(admission.identity.session_id, client=client,
                                                        user_agent=user_agent)
            decision = self.decide(now, method, headers, canonical.decision)
            return lost_access(decision, now, admission.principal)

        return why_close
