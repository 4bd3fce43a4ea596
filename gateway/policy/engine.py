"""decide(): one pure function from (policy, principal, method, canonical path) to a Decision."""

from __future__ import annotations

import time
from collections.abc import Iterable

from gateway.policy.model import Access, Decision, Outcome, Policy, Principal, Rule

_DEFAULT_DENY = Decision(Outcome.FORBIDDEN, None, "no rule: default deny")


def winning_rules(policy: Policy, path: str) -> tuple[Rule, ...]:
    """The rules sharing the most specific pattern that matches ``path``; empty if none matches."""
    return policy.matcher.lookup(path)


def decide(
    policy: Policy, principal: Principal | None, method: str, path: str, *, now: float | None = None
) -> Decision:
    """Decide a request; ``path`` is ``CanonicalPath.decision`` and ``principal`` None means anonymous."""
    rules = policy.matcher.lookup(path)
    if not rules:
        return _DEFAULT_DENY
    method = method.upper()
    rule = next((r for r in rules if r.covers(method)), None)
    if rule is None:
        # Never fall through to a less specific pattern: the operator wrote rules for this path, and
        # a broader rule (often "/**") was not written with these methods in mind.
        return Decision(Outcome.FORBIDDEN, rules[0], "method not covered by the winning pattern")

    access = rule.access
    if access is Access.DENY:
        return Decision(Outcome.FORBIDDEN, rule, "deny rule")
    if access is Access.ANYONE:
        return Decision(Outcome.ALLOW, rule, "allowed")
    if principal is None:
        return Decision(Outcome.LOGIN, rule, "sign-in required")
    if principal.token and not rule.tokens:
        return Decision(Outcome.FORBIDDEN, rule, "tokens not allowed")
    if access is Access.ROLES and rule.roles.isdisjoint(principal.roles):
        return Decision(Outcome.FORBIDDEN, rule, "role required")
    if rule.mfa and not principal.mfa:
        # A token cannot pass a second factor later: only one made by a session that had one will do.
        if principal.token:
            return Decision(Outcome.FORBIDDEN, rule, "token without a second factor")
        return Decision(Outcome.MFA, rule, "second factor required")
    if rule.fresh is not None:
        current = time.time() if now is None else now
        if principal.auth_time < current - rule.fresh:
            return Decision(Outcome.REAUTH, rule, "sign-in too old")
    return Decision(Outcome.ALLOW, rule, "allowed")


def decide_tunnelled(
    policy: Policy, principal: Principal | None, method: str, tunnelled: Iterable[str], path: str,
    *, now: float | None = None,
) -> Decision:
    """Decide a request that may also ask the app to act as another method (X-HTTP-Method-Override
    and co.): each tunnelled method must be allowed as well, or the first refusal decides."""
    decision = decide(policy, principal, method, path, now=now)
    for other in tunnelled if decision.allowed else ():
        refused = decide(policy, principal, other, path, now=now)
        if not refused.allowed:
            return refused
    return decision
