"""Look-alike siblings: a rule restricting ``/X/**`` says nothing about ``/X.csv``, ``/X%20`` or ``/x``.

Many apps serve one resource under several URL shapes: Datasette answers ``/hr``, ``/hr.csv``,
``/hr.json`` and ``/hr.JSON`` with the same table, Rails and Django REST framework add format suffixes,
and lenient routers trim an encoded space. A path policy protects URLs, not resources: when those
siblings fall to a broader rule (typically the ``/**`` catch-all for signed-in users), they open what
``/X/**`` was written to close. Nothing here guesses: every warning comes with sibling paths that the
real engine lets someone open while it refuses that same someone at ``/X``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from urllib.parse import quote

from gateway.policy.analysis import describe_access
from gateway.policy.engine import decide, winning_rules
from gateway.policy.model import Access, Policy, Principal, Problem, Rule
from gateway.policy.paths import PathError, canonicalize
from gateway.policy.patterns import STAR, Pattern, is_prefix, parse_pattern
from gateway.policy.witnesses import FreshNames, pattern_depth, witnesses

# Shapes apps give one resource: format suffixes, and an encoded space (/hr%20) that lenient routers trim.
_SUFFIXES = (".csv", ".json", " ")
# Readable endings for "any other sibling", tried before an invisible one.
_OTHER_ENDINGS = (".csv", ".json", ".html", ".txt", ".x", "-x", "_x", "~x", "x")
_SPARE_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_URL_SAFE = "/!$&'()*+,=:@~-._"
# Principals are built against a fixed clock; the oldest sign-in stands for "never fresh enough".
_NOW = 1_000_000_000.0
_LONG_AGO = 100 * 365 * 86400
_WHO = "(look-alike check)"


def lookalike_siblings(policy: Policy) -> list[Problem]:
    """A warning for each pattern ``.../X/**`` whose look-alike siblings of ``X`` (``X.csv``, ``X%20``,
    ``X`` in other case) are decided by a broader rule that lets in someone ``/X`` refuses."""
    patterns = {id(rule): parse_pattern(rule.pattern) for rule in policy.rules}
    names = FreshNames(patterns.values(), policy.case_insensitive)
    depth = pattern_depth(patterns.values())
    checked: set[tuple[tuple[str, ...], bool]] = set()
    problems: list[Problem] = []
    for rule in policy.rules:
        pattern = patterns[id(rule)]
        key = pattern.key(policy.case_insensitive)
        if key in checked or not _guards_a_name(pattern):
            continue
        checked.add(key)
        problem = _check(policy, pattern, patterns, names, depth)
        if problem is not None:
            problems.append(problem)
    return problems


def _guards_a_name(pattern: Pattern) -> bool:
    """``.../X/**`` with ``X`` a literal: ``X*`` and ``*`` already cover their siblings."""
    if not pattern.globstar or not pattern.segments:
        return False
    last = pattern.segments[-1]
    return last != STAR and not is_prefix(last)


def _check(
    policy: Policy, pattern: Pattern, patterns: dict[int, Pattern], names: FreshNames, depth: int
) -> Problem | None:
    fold = policy.case_insensitive
    key = pattern.key(fold)
    # A path the pattern decides: usually /X itself, deeper when a more specific rule takes /X.
    home = next((p for p in witnesses(pattern, names, depth) if _decided_by(policy, p, key, patterns)), None)
    if home is None:
        return None  # the pattern never decides: shadowed_rules says so
    segments = home[1:].split("/")
    index = len(pattern.segments) - 1
    tail = "/…" if len(segments) > index + 1 else ""  # shown when home is below /X
    leaks: list[tuple[str, bool]] = []  # (sibling as a URL, differs from X only by case)
    guard: Rule | None = None
    broader: Rule | None = None
    for sibling, by_case in _siblings(segments[index], index, names, fold):
        path = "/" + "/".join([*segments[:index], sibling, *segments[index + 1 :]])
        leak = _leak(policy, home, path, patterns)
        if leak is None or not _reachable(path, fold):
            continue
        guard, broader = guard or leak[0], broader or leak[1]
        leaks.append(("/" + "/".join([*pattern.segments[:index], quote(sibling, safe=_URL_SAFE)]) + tail, by_case))
    if guard is None or broader is None:
        return None
    return Problem(guard.file, guard.line, _message(pattern, tail, guard, broader, leaks))


def _decided_by(policy: Policy, path: str, key: tuple[tuple[str, ...], bool], patterns: dict[int, Pattern]) -> bool:
    winners = winning_rules(policy, path)
    return bool(winners) and patterns[id(winners[0])].key(policy.case_insensitive) == key


def _siblings(name: str, position: int, names: FreshNames, fold: bool) -> Iterator[tuple[str, bool]]:
    """Look-alikes of the segment ``name``: suffixed, in other case, and one standing for any other."""
    seen = {name}
    candidates = [(name + suffix, False) for suffix in _SUFFIXES]
    if not fold:  # with case_insensitive the policy itself folds: /HR is /hr
        candidates += [(variant, True) for variant in (name.upper(), name.lower())]
    # A sibling no pattern spells out: if a specific rule handles .csv and .json, /hr.html still counts.
    candidates.append((names.name(name, position, _OTHER_ENDINGS), False))
    for sibling, by_case in candidates:
        if sibling not in seen:
            seen.add(sibling)
            yield sibling, by_case


def _leak(policy: Policy, home: str, path: str, patterns: dict[int, Pattern]) -> tuple[Rule, Rule] | None:
    """(the rule refusing at ``home``, the broader rule allowing at ``path``) if some principal and
    method are allowed at the look-alike ``path`` but refused at ``home``; else None."""
    there = winning_rules(policy, path)
    # A rule that does not match home was written for the look-alikes themselves: the operator chose.
    if not there or not patterns[id(there[0])].matches(home, case_insensitive=policy.case_insensitive):
        return None
    for method in _methods([*winning_rules(policy, home), *there]):
        allowing = next((r for r in there if r.covers(method)), None)
        if allowing is None:
            continue
        for principal in _least_privileged(allowing):
            refused = decide(policy, principal, method, home, now=_NOW)
            # refused.rule is never None here (home is decided by a rule), but the type cannot say so.
            if refused.rule is not None and not refused.allowed and decide(policy, principal, method, path, now=_NOW).allowed:
                return refused.rule, allowing
    return None


def _methods(rules: Iterable[Rule]) -> list[str]:
    """Every method these rules name, and one they do not (standing for all the others)."""
    named = sorted({m for r in rules if r.methods is not None for m in r.methods})
    spare = next((m for m in _SPARE_METHODS if m not in named), "X" * (1 + max(map(len, named), default=0)))
    return [*named, spare]


def _least_privileged(rule: Rule) -> list[Principal | None]:
    """The weakest principals ``rule`` lets in: anyone else it lets in has at least one of their roles
    and a sign-in at least as recent.

    Access only grows with roles and with a more recent sign-in, so if anyone is let in at the
    look-alike and refused at home, one of these is too.
    """
    auth_time = _NOW - (rule.fresh if rule.fresh is not None else _LONG_AGO)
    if rule.access is Access.ANYONE:
        return [None]
    if rule.access is Access.AUTHENTICATED:
        return [Principal(_WHO, frozenset(), auth_time)]
    if rule.access is Access.ROLES:
        return [Principal(_WHO, frozenset({role}), auth_time) for role in sorted(rule.roles)]
    return []


def _reachable(path: str, fold: bool) -> bool:
    """Whether a client can send ``path``: the gateway canonicalises its encoded form back to it."""
    try:
        canonical = canonicalize(quote(path, safe=_URL_SAFE).encode("ascii"), case_insensitive=fold)
    except PathError:
        return False  # answered 400 (a trailing space in case_insensitive mode, for one)
    return canonical.decision == path


def _message(pattern: Pattern, tail: str, guard: Rule, broader: Rule, leaks: list[tuple[str, bool]]) -> str:
    home = "/" + "/".join(pattern.segments) + tail
    shown = ", ".join(url for url, _ in leaks)
    text = (
        f"{guard.pattern!r} guards {home} but not look-alikes such as {shown}: the broader rule {broader.where} "
        f"({broader.pattern!r} {describe_access(broader)}) decides those and lets in users {guard.pattern!r} "
        "refuses, and apps often serve one resource under several such URLs"
    )
    prefix = "/" + "/".join([*pattern.segments[:-1], pattern.segments[-1] + STAR, "**"])
    by_suffix = any(not by_case for _, by_case in leaks)
    by_case = any(by_case for _, by_case in leaks)
    if by_suffix:
        advice = f"use {prefix!r}" + (" (and [policy] case_insensitive = true if the app ignores case)" if by_case else "")
    else:
        advice = "set [policy] case_insensitive = true if the app ignores case"
    return f"{text}; {advice}, or an allow-list without a catch-all"
