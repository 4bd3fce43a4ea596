from __future__ import annotations

from textwrap import dedent

import pytest

from gateway.policy import (
    Decision,
    Outcome,
    Policy,
    Principal,
    decide,
    parse_policy,
    winning_rules,
)

NOW = 1_700_000_000.0

CONTRACT = parse_policy(
    {
        "policy.yaml": dedent(
            """\
            rules:
              - paths: ["/static/**", "/favicon.ico"]
                allow: anyone
              - paths: ["/**"]
                allow: authenticated
              - paths: ["/admin/**"]
                roles: [admin]
                fresh: 15m
              - paths: ["/reports/**"]
                methods: [GET, HEAD]
                roles: [analyst, admin]
              - paths: ["/internal/**"]
                deny: true
            """
        )
    }
)

NO_CATCH_ALL = parse_policy(
    {"a.yaml": "rules:\n  - paths: [/static/**]\n    allow: anyone\n  - paths: [/app/*]\n    allow: authenticated\n"}
)


def user(*roles: str, signed_in_ago: float = 60) -> Principal:
    return Principal(user="u", roles=frozenset(roles), auth_time=NOW - signed_in_ago)


ANON = None
STAFF = user("staff")
ADMIN = user("admin")
ANALYST = user("analyst")

# (id, policy, principal, method, path, outcome, reason, line of the deciding rule or None)
CASES = [
    ("static-anonymous", CONTRACT, ANON, "GET", "/static/x", Outcome.ALLOW, "allowed", 2),
    ("static-dir-itself", CONTRACT, ANON, "GET", "/static", Outcome.ALLOW, "allowed", 2),
    ("favicon-anonymous", CONTRACT, ANON, "GET", "/favicon.ico", Outcome.ALLOW, "allowed", 2),
    ("favicon-literal-only", CONTRACT, ANON, "GET", "/favicon.ico/x", Outcome.LOGIN, "sign-in required", 4),
    ("root-anonymous", CONTRACT, ANON, "GET", "/", Outcome.LOGIN, "sign-in required", 4),
    ("root-signed-in", CONTRACT, STAFF, "GET", "/", Outcome.ALLOW, "allowed", 4),
    ("any-path-signed-in", CONTRACT, STAFF, "DELETE", "/x/y", Outcome.ALLOW, "allowed", 4),
    ("admin-anonymous", CONTRACT, ANON, "GET", "/admin", Outcome.LOGIN, "sign-in required", 6),
    ("admin-wrong-role", CONTRACT, STAFF, "GET", "/admin", Outcome.FORBIDDEN, "role required", 6),
    ("admin-admin", CONTRACT, ADMIN, "GET", "/admin/x", Outcome.ALLOW, "allowed", 6),
    ("admin-trailing-slash", CONTRACT, ADMIN, "GET", "/admin/", Outcome.ALLOW, "allowed", 6),
    ("administrator-not-admin", CONTRACT, STAFF, "GET", "/administrator", Outcome.ALLOW, "allowed", 4),
    ("admin-stale-sign-in", CONTRACT, user("admin", signed_in_ago=901), "GET", "/admin", Outcome.REAUTH,
     "sign-in too old", 6),
    ("admin-fresh-boundary", CONTRACT, user("admin", signed_in_ago=900), "GET", "/admin", Outcome.ALLOW,
     "allowed", 6),
    ("admin-stale-wrong-role", CONTRACT, user("staff", signed_in_ago=5000), "GET", "/admin", Outcome.FORBIDDEN,
     "role required", 6),
    ("reports-get-analyst", CONTRACT, ANALYST, "GET", "/reports/x", Outcome.ALLOW, "allowed", 9),
    ("reports-head-analyst", CONTRACT, ANALYST, "HEAD", "/reports/x", Outcome.ALLOW, "allowed", 9),
    ("reports-lowercase-method", CONTRACT, ANALYST, "get", "/reports/x", Outcome.ALLOW, "allowed", 9),
    ("reports-post-no-fall-through", CONTRACT, ANALYST, "POST", "/reports/x", Outcome.FORBIDDEN,
     "method not covered by the winning pattern", 9),
    ("reports-post-anonymous", CONTRACT, ANON, "POST", "/reports", Outcome.FORBIDDEN,
     "method not covered by the winning pattern", 9),
    ("reports-get-staff", CONTRACT, STAFF, "GET", "/reports", Outcome.FORBIDDEN, "role required", 9),
    ("reports-get-anonymous", CONTRACT, ANON, "GET", "/reports", Outcome.LOGIN, "sign-in required", 9),
    ("internal-admin", CONTRACT, ADMIN, "GET", "/internal/x", Outcome.FORBIDDEN, "deny rule", 12),
    ("internal-anonymous", CONTRACT, ANON, "GET", "/internal", Outcome.FORBIDDEN, "deny rule", 12),
    ("nothing-default-deny", NO_CATCH_ALL, ADMIN, "GET", "/nothing", Outcome.FORBIDDEN, "no rule: default deny",
     None),
    ("root-default-deny", NO_CATCH_ALL, ANON, "GET", "/", Outcome.FORBIDDEN, "no rule: default deny", None),
    ("star-needs-a-segment", NO_CATCH_ALL, ADMIN, "GET", "/app/", Outcome.FORBIDDEN, "no rule: default deny",
     None),
    ("star-matches", NO_CATCH_ALL, ANON, "GET", "/app/x", Outcome.LOGIN, "sign-in required", 4),
    ("empty-policy", Policy(rules=()), ADMIN, "GET", "/", Outcome.FORBIDDEN, "no rule: default deny", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "principal", "method", "path", "outcome", "reason", "line"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide(
    policy: Policy,
    principal: Principal | None,
    method: str,
    path: str,
    outcome: Outcome,
    reason: str,
    line: int | None,
) -> None:
    decision = decide(policy, principal, method, path, now=NOW)
    assert (decision.outcome, decision.reason) == (outcome, reason)
    assert (decision.rule.line if decision.rule else None) == line
    assert decision.allowed is (outcome is Outcome.ALLOW)


SPECIFICITY = parse_policy(
    {
        "a.yaml": dedent(
            """\
            rules:
              - {paths: ["/a/*/c"], allow: anyone, name: star-c}
              - {paths: ["/a/**"], allow: anyone, name: a-all}
              - {paths: ["/a/b"], allow: anyone, name: a-b}
              - {paths: ["/a/*"], allow: anyone, name: a-star}
              - {paths: ["/a/*/**"], allow: anyone, name: a-star-all}
              - {paths: ["/a/b/**"], allow: anyone, name: a-b-all}
              - {paths: ["/a/*/c/d"], allow: anyone, name: a-star-c-d}
            """
        ),
    }
)

WINNERS = [
    ("star-beats-globstar", "/a/x/c", "star-c"),
    ("literal-beats-star", "/a/b", "a-b"),
    ("ended-beats-star-globstar", "/a/x", "a-star"),
    ("star-globstar-below", "/a/x/y", "a-star-all"),
    ("more-literal-leading-segments", "/a/b/c/d", "a-b-all"),
    ("star-chain-when-no-literal", "/a/x/c/d", "a-star-c-d"),
    ("globstar-covers-itself", "/a", "a-all"),
    ("globstar-covers-trailing-slash", "/a/", "a-all"),
]


@pytest.mark.parametrize(("path", "name"), [c[1:] for c in WINNERS], ids=[c[0] for c in WINNERS])
def test_specificity(path: str, name: str) -> None:
    assert [r.name for r in winning_rules(SPECIFICITY, path)] == [name]
    assert decide(SPECIFICITY, None, "GET", path).rule is winning_rules(SPECIFICITY, path)[0]


def test_winning_rules_lists_every_rule_of_the_pattern() -> None:
    policy = parse_policy(
        {
            "a.yaml": "rules:\n  - paths: [/a]\n    methods: [GET]\n    allow: anyone\n",
            "b.yaml": "rules:\n  - paths: [/a]\n    methods: [POST]\n    roles: [w]\n",
        }
    )
    assert [(r.file, r.line) for r in winning_rules(policy, "/a")] == [("a.yaml", 2), ("b.yaml", 2)]
    assert decide(policy, None, "POST", "/a").outcome is Outcome.LOGIN
    assert decide(policy, None, "HEAD", "/a").outcome is Outcome.ALLOW
    assert decide(policy, None, "PUT", "/a").outcome is Outcome.FORBIDDEN
    assert winning_rules(policy, "/b") == ()


CASE_INSENSITIVE = parse_policy(
    {"a.yaml": "rules:\n  - paths: [/Admin/**]\n    roles: [admin]\n  - paths: [/**]\n    allow: anyone\n"},
    case_insensitive=True,
)
CASE_SENSITIVE = parse_policy(
    {"a.yaml": "rules:\n  - paths: [/Admin/**]\n    roles: [admin]\n  - paths: [/**]\n    allow: anyone\n"}
)

CASES_FOLDED = [
    ("folded-lower", CASE_INSENSITIVE, "/admin/x", Outcome.LOGIN),
    ("folded-upper", CASE_INSENSITIVE, "/ADMIN", Outcome.LOGIN),
    ("folded-as-written", CASE_INSENSITIVE, "/Admin/", Outcome.LOGIN),
    ("folded-other", CASE_INSENSITIVE, "/public", Outcome.ALLOW),
    ("sensitive-lower-escapes", CASE_SENSITIVE, "/admin/x", Outcome.ALLOW),
    ("sensitive-as-written", CASE_SENSITIVE, "/Admin/x", Outcome.LOGIN),
]


@pytest.mark.parametrize(("policy", "path", "outcome"), [c[1:] for c in CASES_FOLDED], ids=[c[0] for c in CASES_FOLDED])
def test_case_insensitive_mode(policy: Policy, path: str, outcome: Outcome) -> None:
    assert decide(policy, None, "GET", path).outcome is outcome


def test_fresh_uses_the_clock_when_now_is_not_given() -> None:
    recent = Principal("u", frozenset({"admin"}), auth_time=1e12)  # far future: never stale
    stale = Principal("u", frozenset({"admin"}), auth_time=0.0)
    assert decide(CONTRACT, recent, "GET", "/admin").outcome is Outcome.ALLOW
    assert decide(CONTRACT, stale, "GET", "/admin").outcome is Outcome.REAUTH


def test_fresh_on_authenticated_rule() -> None:
    policy = parse_policy({"a.yaml": "rules:\n  - paths: [/**]\n    allow: authenticated\n    fresh: 1h\n"})
    assert decide(policy, user(signed_in_ago=3601), "GET", "/", now=NOW).outcome is Outcome.REAUTH
    assert decide(policy, user(signed_in_ago=3599), "GET", "/", now=NOW).outcome is Outcome.ALLOW
    assert decide(policy, None, "GET", "/", now=NOW).outcome is Outcome.LOGIN


def test_decision_allowed_property() -> None:
    assert Decision(Outcome.ALLOW, None, "allowed").allowed
    assert not Decision(Outcome.REAUTH, None, "sign-in too old").allowed


def test_a_tunnelled_method_must_be_allowed_too() -> None:
    from gateway.policy import decide_tunnelled, parse_policy

    policy = parse_policy({"t.yaml": 'rules:\n  - paths: ["/r/**"]\n    methods: [GET]\n    allow: anyone\n'
                                     '  - paths: ["/d/**"]\n    deny: true\n'})
    assert decide_tunnelled(policy, None, "GET", [], "/r/x").allowed
    refused = decide_tunnelled(policy, None, "GET", ["DELETE"], "/r/x")
    assert not refused.allowed and refused.reason == "method not covered by the winning pattern"
    assert decide_tunnelled(policy, None, "GET", ["GET", "HEAD"], "/r/x").allowed
    assert decide_tunnelled(policy, None, "GET", ["GET"], "/d/x").reason == "deny rule"  # the request itself first


# A Datasette-style app serves table hr at /hr, /hr.csv, /hr.json, /hr/row...: the prefix pattern covers them.
PREFIXED = parse_policy(
    {
        "app.yaml": dedent(
            """\
            rules:
              - paths: ["/**"]
                allow: authenticated
              - paths: ["/hr*/**"]
                roles: [hr]
              - paths: ["/hr.c*/**"]
                methods: [GET]
                roles: [hr, auditor]
              - paths: ["/hr/public"]
                allow: anyone
            """
        )
    }
)
HR = user("hr")
AUDITOR = user("auditor")

PREFIX_CASES = [
    ("table-staff", STAFF, "GET", "/hr", Outcome.FORBIDDEN, "role required", 4),
    ("table-hr", HR, "GET", "/hr", Outcome.ALLOW, "allowed", 4),
    ("json-staff", STAFF, "GET", "/hr.json", Outcome.FORBIDDEN, "role required", 4),
    ("json-upper-ext-staff", STAFF, "GET", "/hr.JSON", Outcome.FORBIDDEN, "role required", 4),
    ("row-staff", STAFF, "GET", "/hr/1", Outcome.FORBIDDEN, "role required", 4),
    ("longer-prefix-auditor", AUDITOR, "GET", "/hr.csv", Outcome.ALLOW, "allowed", 6),
    ("longer-prefix-no-fall-through", HR, "POST", "/hr.csv", Outcome.FORBIDDEN,
     "method not covered by the winning pattern", 6),
    ("literal-beats-prefix", ANON, "GET", "/hr/public", Outcome.ALLOW, "allowed", 9),
    ("other-case-is-another-path", STAFF, "GET", "/HR", Outcome.ALLOW, "allowed", 2),
    ("not-a-prefix-match", STAFF, "GET", "/h", Outcome.ALLOW, "allowed", 2),
    ("prefix-is-not-a-substring", STAFF, "GET", "/xhr", Outcome.ALLOW, "allowed", 2),
]  # fmt: skip


@pytest.mark.parametrize(
    ("principal", "method", "path", "outcome", "reason", "line"), [c[1:] for c in PREFIX_CASES],
    ids=[c[0] for c in PREFIX_CASES],
)  # fmt: skip
def test_decide_with_prefixes(
    principal: Principal | None, method: str, path: str, outcome: Outcome, reason: str, line: int
) -> None:
    decision = decide(PREFIXED, principal, method, path, now=NOW)
    assert (decision.outcome, decision.reason) == (outcome, reason)
    assert decision.rule is not None and decision.rule.line == line


def test_prefixes_fold_case_in_case_insensitive_mode() -> None:
    policy = parse_policy(
        {"a.yaml": "rules:\n  - paths: ['/HR*/**']\n    roles: [hr]\n  - paths: [/**]\n    allow: authenticated\n"},
        case_insensitive=True,
    )
    for path in ("/hr", "/HR.JSON", "/Hr.csv/x"):
        assert decide(policy, STAFF, "GET", path).reason == "role required", path
    assert decide(policy, STAFF, "GET", "/xhr").allowed
