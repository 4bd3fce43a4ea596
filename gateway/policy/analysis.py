"""Questions an operator asks about a loaded Policy: dead rules, roles nobody holds, how a target is decided.

Pure functions over a ``Policy``: no I/O and no framework import, so ``gateway policy check`` and
``gateway policy explain`` can be tested table by table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.policy.engine import decide, winning_rules
from gateway.policy.model import Access, Decision, Outcome, Policy, Principal, Problem, Rule
from gateway.policy.paths import CanonicalPath, PathError, canonicalize, origin_form
from gateway.policy.patterns import Pattern, parse_pattern
from gateway.policy.witnesses import FreshNames, pattern_depth, witnesses

_Key = tuple[tuple[str, ...], bool]  # Pattern.key(): equal keys match exactly the same paths


def shadowed_rules(policy: Policy) -> list[Problem]:
    """A warning for every rule whose pattern can never be the most specific match of any path."""
    patterns = {id(rule): parse_pattern(rule.pattern) for rule in policy.rules}
    keys = {rule_id: pattern.key(policy.case_insensitive) for rule_id, pattern in patterns.items()}
    names = FreshNames(patterns.values(), policy.case_insensitive)
    # Witness tails deeper than the deepest pattern are all matched by the same (globstar) patterns.
    depth = pattern_depth(patterns.values())
    patterns_per_rule: dict[tuple[str, int], int] = {}
    for rule in policy.rules:
        patterns_per_rule[rule.file, rule.line] = patterns_per_rule.get((rule.file, rule.line), 0) + 1

    verdicts: dict[_Key, Rule | None] = {}  # pattern key -> a shadowing rule, or None
    problems: list[Problem] = []
    for rule in policy.rules:
        key = keys[id(rule)]
        if key not in verdicts:
            verdicts[key] = _shadowing_rule(policy, patterns[id(rule)], keys, names, depth)
        shadow = verdicts[key]
        if shadow is None:
            continue
        # One rule in the file may list several patterns: then say which one is dead.
        subject = "rule" if patterns_per_rule[rule.file, rule.line] == 1 else f"pattern {rule.pattern!r}"
        message = f"{subject} can never decide: every path it matches is decided by a more specific pattern"
        problems.append(Problem(rule.file, rule.line, f"{message} (e.g. {shadow.where})"))
    return problems


def _shadowing_rule(
    policy: Policy, pattern: Pattern, keys: dict[int, _Key], names: FreshNames, depth: int
) -> Rule | None:
    """None if ``pattern`` wins on one of its witnesses, else a rule that beats it on the first one."""
    key = pattern.key(policy.case_insensitive)
    shadow: Rule | None = None
    for path in witnesses(pattern, names, depth):
        winners = winning_rules(policy, path)
        # The pattern matches its own witnesses, so an empty answer is impossible; if it ever came,
        # saying nothing beats a false warning.
        if not winners or keys[id(winners[0])] == key:
            return None
        shadow = shadow or winners[0]
    return shadow


def unheld_roles(policy: Policy, held: Iterable[str]) -> list[Problem]:
    """A warning per (rule, role) naming a role that no user holds: the rule lets nobody in that way."""
    holders = set(held)
    seen: set[tuple[str, int, str]] = set()
    problems: list[Problem] = []
    for rule in policy.rules:
        if rule.access is not Access.ROLES:
            continue
        for role in sorted(rule.roles - holders):
            # One rule with several patterns is several Rule objects, but one place to fix.
            if (rule.file, rule.line, role) in seen:
                continue
            seen.add((rule.file, rule.line, role))
            problems.append(Problem(rule.file, rule.line, f"role {role!r} is held by no user"))
    return problems


# ---- explain ------------------------------------------------------------------------------------------------

REJECTED = "rejected"
# What the client experiences, by outcome: the label shown and the status a non-browser client gets.
_LABELS = {
    Outcome.ALLOW: "allow",
    Outcome.LOGIN: "sign-in required",
    Outcome.REAUTH: "sign-in too old",
    Outcome.MFA: "second factor required",
    Outcome.FORBIDDEN: "forbidden",
}
_HTTP_STATUS = {Outcome.ALLOW: 200, Outcome.LOGIN: 401, Outcome.REAUTH: 401, Outcome.MFA: 401, Outcome.FORBIDDEN: 403}
_GATEWAY_PREFIX = "/.gateway/"


@dataclass(frozen=True, slots=True)
class Explanation:
    method: str
    target: str  # as the operator typed it
    canonical: CanonicalPath | None  # None when the target is rejected
    rejected: str | None  # the PathError reason: the gateway answers 400
    decision: Decision | None  # None when the target is rejected
    principal: Principal | None = None  # who was asked about; None is anonymous

    @property
    def outcome(self) -> str:
        return REJECTED if self.decision is None else self.decision.outcome.value

    @property
    def status(self) -> str:
        return REJECTED if self.decision is None else _LABELS[self.decision.outcome]

    @property
    def http_status(self) -> int:
        """The answer to a non-browser client; a browser (Accept: text/html) gets a 302 instead of 401."""
        return 400 if self.decision is None else _HTTP_STATUS[self.decision.outcome]

    def lines(self) -> list[str]:
        """The human report, one ``label: value`` per line."""
        result = [f"request:   {self.method} {self.target}", f"user:      {_describe_principal(self.principal)}"]
        if self.canonical is None or self.decision is None:
            result.append("canonical: none")
            result.append(f"decision:  400 bad request ({self.rejected})")
            return result
        result.append(f"canonical: {self.canonical.decision}")
        if self.canonical.forward != self.canonical.decision:
            result.append(f"forwarded: {self.canonical.forward}")
        decision = self.decision
        label = _LABELS[decision.outcome]
        detail = "" if decision.reason in (label, "allowed") else f" ({decision.reason})"
        result.append(f"decision:  {label}{detail}")
        if decision.rule is None:
            result.append("rule:      none: no rule matches (default deny)")
        else:
            result.append(f"rule:      {describe_rule(decision.rule)}")
        if self.canonical.decision == _GATEWAY_PREFIX[:-1] or self.canonical.decision.startswith(_GATEWAY_PREFIX):
            result.append(f"note:      {_GATEWAY_PREFIX} is the gateway's own: it answers there without the policy")
        return result

    def as_json(self) -> dict[str, object]:
        rule = self.decision.rule if self.decision is not None else None
        return {
            "method": self.method,
            "target": self.target,
            "canonical": self.canonical.decision if self.canonical else None,
            "forwarded": self.canonical.forward if self.canonical else None,
            "status": self.status,
            "http_status": self.http_status,
            "outcome": self.outcome,
            "reason": self.decision.reason if self.decision is not None else self.rejected,
            "rule": _rule_json(rule) if rule is not None else None,
        }


def explain(
    policy: Policy,
    method: str,
    raw_path: str,
    principal: Principal | None,
    *,
    allow_params: bool,
    now: float | None = None,
) -> Explanation:
    """How the gateway would answer ``method raw_path`` for ``principal`` (None: no session).

    ``raw_path`` is written as a browser would send it: percent-encoding and raw UTF-8 are both fine, an
    absolute-form target is decided by its path, and a query string is ignored, as the gateway does.
    """
    path = origin_form(raw_path.split("?", 1)[0].encode("utf-8"))
    try:
        canonical = canonicalize(path, allow_params=allow_params, case_insensitive=policy.case_insensitive)
    except PathError as exc:
        return Explanation(method, raw_path, None, str(exc), None, principal)
    decision = decide(policy, principal, method, canonical.decision, now=now)
    return Explanation(method, raw_path, canonical, None, decision, principal)


def describe_rule(rule: Rule) -> str:
    """``FILE:LINE  paths PATTERN ACCESS [methods ...] [fresh ...]  "name"``: a rule as the operator wrote it."""
    parts = [f"{rule.where}  paths {rule.pattern} {describe_access(rule)}"]
    if rule.methods is not None:
        parts.append(f"methods [{', '.join(sorted(rule.methods))}]")
    if rule.fresh is not None:
        parts.append(f"fresh {_format_seconds(rule.fresh)}")
    if rule.mfa:
        parts.append("mfa")
    if not rule.tokens:
        parts.append("no tokens")
    text = " ".join(parts)
    return f'{text}  "{rule.name}"' if rule.name else text


def describe_access(rule: Rule) -> str:
    """``roles [a, b]``, ``deny``, ``allow anyone`` or ``allow authenticated``."""
    if rule.access is Access.ROLES:
        return f"roles [{', '.join(sorted(rule.roles))}]"
    if rule.access is Access.DENY:
        return "deny"
    return f"allow {rule.access.value}"


def _describe_principal(principal: Principal | None) -> str:
    if principal is None:
        return "anonymous (no session)"
    return f"{principal.user}, roles [{', '.join(sorted(principal.roles))}]"


def _format_seconds(seconds: int) -> str:
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _rule_json(rule: Rule) -> dict[str, object]:
    return {
        "file": rule.file,
        "line": rule.line,
        "pattern": rule.pattern,
        "access": rule.access.value,
        "roles": sorted(rule.roles),
        "methods": sorted(rule.methods) if rule.methods is not None else None,
        "name": rule.name,
    }
