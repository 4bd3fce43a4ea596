"""Plain, frozen data for the policy: rules, principals, decisions and load problems."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.policy.patterns import Matcher


class Access(enum.Enum):
    ANYONE = "anyone"
    AUTHENTICATED = "authenticated"
    ROLES = "roles"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Rule:
    pattern: str  # one pattern, as written in the file
    access: Access
    roles: frozenset[str]  # only meaningful for Access.ROLES
    methods: frozenset[str] | None  # upper-case; None covers every method
    fresh: int | None  # seconds; the sign-in must be at most this old
    name: str | None
    file: str
    line: int  # 1-based line of the rule's mapping
    mfa: bool = False  # `mfa: true`: the session must have passed a second factor
    tokens: bool = True  # `tokens: false`: personal access tokens are refused here (sessions only)

    def covers(self, method: str) -> bool:
        if self.methods is None:
            return True
        method = method.upper()
        # The loader stores HEAD beside GET; the second test keeps hand-built rules consistent.
        return method in self.methods or (method == "HEAD" and "GET" in self.methods)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    roles: frozenset[str]
    auth_time: float  # unix time of the password sign-in
    mfa: bool = False  # a second factor was passed (for a token: by the session that created it)
    token: bool = False  # identified by a personal access token, not a session cookie


class Outcome(enum.Enum):
    ALLOW = "allow"
    LOGIN = "login"  # no session: signing in could make it allowed
    REAUTH = "reauth"  # allowed, but the sign-in is older than the rule's `fresh`
    MFA = "mfa"  # allowed once the session passes a second factor (`mfa: true`)
    FORBIDDEN = "forbidden"


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    rule: Rule | None  # the deciding rule; None when no pattern matched (default deny)
    reason: str

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOW


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int  # 1-based; 0 when the problem is about the whole file or directory
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class Policy:
    rules: tuple[Rule, ...]
    case_insensitive: bool = False
    files: tuple[str, ...] = ()
    warnings: tuple[Problem, ...] = ()
    # A short hash of the files' names and texts (policy/snapshot.py): what operators compare to see
    # that every worker and every machine enforces the same policy.
    version: str = ""
    # The text of each file as loaded ({path: YAML}), so exactly this policy can be handed on.
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    # Compiled once here so a decision never re-reads the rules.
    matcher: Matcher = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "matcher", Matcher(self.rules, case_insensitive=self.case_insensitive))
