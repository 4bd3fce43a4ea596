from __future__ import annotations

import itertools
from pathlib import Path
from textwrap import dedent

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy import Outcome, Policy, Principal, parse_policy, winning_rules
from gateway.policy.analysis import Explanation, describe_rule, explain, shadowed_rules, unheld_roles
from gateway.policy.lookalikes import lookalike_siblings
from gateway.policy.model import Access, Rule
from gateway.policy.patterns import parse_pattern

NOW = 1_700_000_000.0


def rules_yaml(*lines: str) -> str:
    """One rule per ``paths: [...]  access`` line, so rule N sits on line 2N."""
    body = "".join(f"  - paths: [{paths}]\n    {access}\n" for paths, access in (line.split("  ") for line in lines))
    return "rules:\n" + body


def dead(policy: Policy) -> list[tuple[str, int]]:
    return [(p.file, p.line) for p in shadowed_rules(policy)]


# ---- shadowed_rules ---------------------------------------------------------------------------------------

# (id, rules as "paths  access" lines, case_insensitive, lines of the rules flagged dead)
SHADOWED = [
    ("alone", ["/**  allow: anyone"], False, []),
    ("globstar-covered-by-three", ["/a  allow: anyone", "/a/**  roles: [admin]", "/a/  allow: anyone",
                                   "/a/*/**  allow: anyone"], False, [4]),
    ("globstar-keeps-its-trailing-slash", ["/a  allow: anyone", "/a/**  roles: [admin]", "/a/*/**  allow: anyone"],
     False, []),
    ("globstar-keeps-its-root", ["/a/  allow: anyone", "/a/**  roles: [admin]", "/a/*/**  allow: anyone"], False, []),
    ("star-beats-literal-siblings-on-fresh-names", ["/a  allow: anyone", "/b  allow: anyone", "/*  deny: true"],
     False, []),
    ("root-globstar-covered", ["/  allow: anyone", "/*/**  allow: authenticated", "/**  deny: true"], False, [6]),
    ("star-globstar-covered-by-star-levels", ["/a/*  allow: anyone", "/a/*/  allow: anyone",
                                              "/a/*/*/**  allow: anyone", "/a/*/**  deny: true"], False, [8]),
    # A tail deeper than any fixed witness list: /p/x/y/ is still /p/**'s own.
    ("deep-tail-keeps-globstar", ["/p  deny: true", "/p/  deny: true", "/p/*  deny: true", "/p/*/  deny: true",
                                  "/p/*/*  deny: true", "/p/*/*/*/**  deny: true", "/p/**  allow: anyone"], False, []),
    ("deep-tail-covered", ["/p  deny: true", "/p/  deny: true", "/p/*  deny: true", "/p/*/  deny: true",
                           "/p/*/*  deny: true", "/p/*/*/  deny: true", "/p/*/*/*/**  deny: true",
                           "/p/**  allow: anyone"], False, [16]),
    ("deeper-tail-keeps-globstar", ["/p  deny: true", "/p/  deny: true", "/p/*  deny: true", "/p/*/  deny: true",
                                    "/p/*/*  deny: true", "/p/*/*/  deny: true", "/p/*/*/*  deny: true",
                                    "/p/*/*/*/*/**  deny: true", "/p/**  allow: anyone"], False, []),
    ("literals-never-shadowed", ["/a  allow: anyone", "/a/*  allow: anyone", "/*/b  allow: anyone"], False, []),
    ("case-folded-cover", ["/A  allow: anyone", "/a/  allow: anyone", "/A/*/**  allow: anyone",
                           "/a/**  deny: true"], True, [8]),
    ("case-kept-no-cover", ["/A  allow: anyone", "/a/  allow: anyone", "/A/*/**  allow: anyone",
                            "/a/**  deny: true"], False, []),
    ("prefix-alone", ["/hr*/**  roles: [hr]", "/**  allow: authenticated"], False, []),
    ("prefix-globstar-covered-by-three", ["/hr*  allow: anyone", "/hr*/  allow: anyone", "/hr*/*/**  allow: anyone",
                                          "/hr*/**  deny: true"], False, [8]),
    ("prefix-globstar-covers-star-globstar-partly", ["/a*/**  allow: anyone", "/*/**  deny: true"], False, []),
    ("star-not-covered-by-prefixes", ["/a*  deny: true", "/b*  deny: true", "/*  allow: anyone"], False, []),
    ("shorter-prefix-not-covered-by-longer", ["/hr.*/**  deny: true", "/hr*/**  allow: anyone"], False, []),
    ("prefix-not-covered-by-literal", ["/hr/**  deny: true", "/hr*/**  allow: anyone"], False, []),
    ("star-globstar-under-prefix-covered", ["/a*  allow: anyone", "/a*/  allow: anyone", "/a*/*/**  allow: anyone",
                                            "/a*/**  deny: true", "/*/**  deny: true"], False, [8]),
    ("folded-prefix-cover", ["/HR*  allow: anyone", "/hr*/  allow: anyone", "/Hr*/*/**  allow: anyone",
                             "/hr*/**  deny: true"], True, [8]),
    ("unfolded-prefix-no-cover", ["/HR*  allow: anyone", "/hr*/  allow: anyone", "/Hr*/*/**  allow: anyone",
                                  "/hr*/**  deny: true"], False, []),
]  # fmt: skip


@pytest.mark.parametrize(("lines", "case_insensitive", "expected"), [c[1:] for c in SHADOWED], ids=[c[0] for c in SHADOWED])
def test_shadowed_rules(lines: list[str], case_insensitive: bool, expected: list[int]) -> None:
    policy = parse_policy({"p.yaml": rules_yaml(*lines)}, case_insensitive=case_insensitive)
    assert dead(policy) == [("p.yaml", line) for line in expected]


def test_shadowed_message_names_a_shadowing_rule_in_any_file() -> None:
    policy = parse_policy(
        {
            "a.yaml": rules_yaml("/a  allow: anyone", "/a/  allow: anyone"),
            "b.yaml": rules_yaml("/a/**  deny: true", "/a/*/**  allow: anyone"),
        }
    )
    (problem,) = shadowed_rules(policy)
    assert (problem.file, problem.line) == ("b.yaml", 2)
    assert problem.message == (
        "rule can never decide: every path it matches is decided by a more specific pattern (e.g. a.yaml:2)"
    )


def test_shadowed_names_the_pattern_of_a_rule_with_several() -> None:
    text = 'rules:\n  - paths: ["/a", "/b/**"]\n    allow: anyone\n  - paths: ["/b", "/b/", "/b/*/**"]\n    deny: true\n'
    (problem,) = shadowed_rules(parse_policy({"p.yaml": text}))
    assert (problem.line, problem.message.split(":")[0]) == (2, "pattern '/b/**' can never decide")


def test_same_pattern_rules_win_together() -> None:
    policy = parse_policy(
        {"p.yaml": "rules:\n  - paths: [/a]\n    methods: [GET]\n    allow: anyone\n"
                   "  - paths: [/a]\n    methods: [POST]\n    roles: [w]\n"}
    )  # fmt: skip
    assert shadowed_rules(policy) == []


def test_fresh_witnesses_avoid_literals_that_look_like_them() -> None:
    # A literal spelled like the first fresh segment must not make "/*" look alive through it.
    policy = parse_policy({"p.yaml": rules_yaml("/\u2063w1  allow: anyone", "/*  deny: true")})
    assert dead(policy) == []


def test_fresh_witnesses_avoid_prefixes_that_catch_them() -> None:
    # A prefix spelled with the witnesses' first character must not make "/*" look dead either.
    policy = parse_policy({"p.yaml": rules_yaml("/\u2063*  allow: anyone", "/\u2063w*/**  allow: anyone",
                                                "/*  deny: true")})  # fmt: skip
    assert dead(policy) == []


def test_no_rules_no_findings() -> None:
    empty = parse_policy({"p.yaml": "rules: []\n"})
    assert shadowed_rules(empty) == [] and unheld_roles(empty, []) == []
    assert [w.message for w in empty.warnings] == ["no rules: every request is denied"]  # the loader warns


# Brute force: every path over a tiny alphabet, deeper than any generated pattern. "c" is used by no
# pattern, so it stands for every name the policy does not spell out.
LETTERS = ["a", "b", "x", "*"]
ALPHABET = ["a", "b", "x", "A", "c"]
ALL_PATHS = ["/"] + [
    "/" + "/".join(names) + slash
    for depth in range(1, 5)
    for names in itertools.product(ALPHABET, repeat=depth)
    for slash in ("", "/")
]


def pattern_text(segments: list[str], end: str) -> str:
    if end == "glob":
        return "/" + "/".join([*segments, "**"])
    return "/" + "/".join(segments) + ("/" if end == "slash" and segments else "")


ENDS = ["glob", "slash", "none"]
pattern_texts = st.builds(pattern_text, st.lists(st.sampled_from([*LETTERS, "A"]), max_size=3), st.sampled_from(ENDS))
# Shadowing needs several patterns around one prefix; independent random patterns rarely line up.
NEAR = [(), ("*",), ("a",), ("x",), ("*", "*"), ("*", "a"), ("a", "*")]


@st.composite
def policy_texts(draw: st.DrawFn) -> list[str]:
    base = draw(st.lists(st.sampled_from(["a", "A", "*"]), max_size=1))
    near = sorted({pattern_text(base + list(tail), end) for tail in NEAR for end in ENDS})
    return draw(st.lists(st.sampled_from(near), unique=True, min_size=4, max_size=12)) + draw(st.lists(pattern_texts, max_size=4))


def make_policy(texts: list[str], case_insensitive: bool) -> Policy:
    keys: set[tuple[tuple[str, ...], bool]] = set()
    rules: list[Rule] = []
    for line, text in enumerate(texts, start=1):
        key = parse_pattern(text).key(case_insensitive)
        if key not in keys:  # the loader would refuse the same pattern twice
            keys.add(key)
            rules.append(Rule(text, Access.ANYONE, frozenset(), None, None, None, "p.yaml", line))
    return Policy(rules=tuple(rules), case_insensitive=case_insensitive)


@settings(max_examples=300, deadline=None)
@given(policy_texts(), st.booleans())
def test_shadowed_rules_agree_with_brute_force(texts: list[str], case_insensitive: bool) -> None:
    policy = make_policy(texts, case_insensitive)
    winners = {id(rule) for path in ALL_PATHS for rule in winning_rules(policy, path)}
    flagged = set(dead(policy))
    for rule in policy.rules:
        assert ((rule.file, rule.line) in flagged) is (id(rule) not in winners), rule.pattern


# The same with prefixes. Every class of segment the patterns can tell apart has a name here: "a" (literal
# a, prefix a*), "A", "ab" (a* and ab*), "ax" (a* alone), "Ab" (A* alone) and "c" (only *).
PREFIX_LETTERS = ["a", "*", "a*", "ab*", "A*"]
PREFIX_ALPHABET = ["a", "A", "ab", "ax", "Ab", "c"]
PREFIX_PATHS = ["/"] + [
    "/" + "/".join(names) + slash
    for depth in range(1, 5)
    for names in itertools.product(PREFIX_ALPHABET, repeat=depth)
    for slash in ("", "/")
]
PREFIX_NEAR = [(), ("*",), ("a",), ("a*",), ("ab*",), ("*", "*"), ("a*", "*"), ("*", "a*")]


@st.composite
def prefix_policy_texts(draw: st.DrawFn) -> list[str]:
    base = draw(st.lists(st.sampled_from(["a", "a*", "A*", "*"]), max_size=1))
    near = sorted({pattern_text(base + list(tail), end) for tail in PREFIX_NEAR for end in ENDS})
    extra = st.builds(pattern_text, st.lists(st.sampled_from(PREFIX_LETTERS), max_size=3), st.sampled_from(ENDS))
    return draw(st.lists(st.sampled_from(near), unique=True, min_size=4, max_size=12)) + draw(st.lists(extra, max_size=4))


@settings(max_examples=200, deadline=None)
@given(prefix_policy_texts(), st.booleans())
def test_shadowed_rules_with_prefixes_agree_with_brute_force(texts: list[str], case_insensitive: bool) -> None:
    policy = make_policy(texts, case_insensitive)
    winners = {id(rule) for path in PREFIX_PATHS for rule in winning_rules(policy, path)}
    flagged = set(dead(policy))
    for rule in policy.rules:
        assert ((rule.file, rule.line) in flagged) is (id(rule) not in winners), rule.pattern


# ---- unheld_roles -----------------------------------------------------------------------------------------

ROLES_POLICY = parse_policy(
    {
        "p.yaml": dedent(
            """\
            rules:
              - paths: ["/a/**", "/b/**"]
                roles: [zed, admin, auditor]
              - paths: ["/**"]
                allow: authenticated
              - paths: ["/x"]
                roles: [admin]
            """
        )
    }
)


@pytest.mark.parametrize(
    ("held", "expected"),
    [
        ({"admin", "auditor", "zed"}, []),
        ({"admin"}, [(2, "auditor"), (2, "zed")]),
        (set(), [(2, "admin"), (2, "auditor"), (2, "zed"), (6, "admin")]),
        ({"Admin", "auditor", "zed"}, [(2, "admin"), (6, "admin")]),  # role names are exact
    ],
    ids=["all-held", "some-held-once-per-rule", "none-held", "case-matters"],
)
def test_unheld_roles(held: set[str], expected: list[tuple[int, str]]) -> None:
    problems = unheld_roles(ROLES_POLICY, held)
    assert [(p.line, p.message) for p in problems] == [(line, f"role {role!r} is held by no user") for line, role in expected]
    assert {p.file for p in problems} <= {"p.yaml"}


def test_unheld_roles_takes_any_iterable() -> None:
    assert unheld_roles(ROLES_POLICY, (r for r in ["admin", "auditor", "zed"])) == []


# ---- explain ----------------------------------------------------------------------------------------------

MAIN = parse_policy(
    {
        "policies/main.yaml": dedent(
            """\
            rules:
              - paths: ["/**"]
                allow: authenticated
              - paths: ["/admin/**"]
                name: administration
                roles: [admin]
                fresh: 1h30m
              - paths: ["/reports/**"]
                methods: [GET]
                roles: [analyst]
              - paths: ["/internal/**"]
                deny: true
              - paths: ["/static/**"]
                allow: anyone
            """
        )
    }
)
PARTIAL = parse_policy({"p.yaml": rules_yaml("/app/*  allow: anyone")})
FOLDED = parse_policy({"p.yaml": rules_yaml("/Admin/**  roles: [admin]", "/**  allow: anyone")}, case_insensitive=True)

ANON = None
STAFF = Principal("sam", frozenset({"staff"}), auth_time=NOW - 60)
ADMIN = Principal("ann", frozenset({"admin"}), auth_time=NOW - 60)
STALE_ADMIN = Principal("ann", frozenset({"admin"}), auth_time=NOW - 5401)

# (id, policy, method, target, principal, allow_params, canonical, outcome, status, http status, reason, rule line)
EXPLAIN = [
    ("dotdot-and-query", MAIN, "GET", "/a/../admin/x?next=/internal", ADMIN, False, "/admin/x", "allow", "allow",
     200, "allowed", 4),
    ("anonymous", MAIN, "GET", "/admin/x", ANON, False, "/admin/x", "login", "sign-in required", 401,
     "sign-in required", 4),
    ("wrong-role", MAIN, "GET", "/admin/x", STAFF, False, "/admin/x", "forbidden", "forbidden", 403, "role required", 4),
    ("stale", MAIN, "GET", "/admin", STALE_ADMIN, False, "/admin", "reauth", "sign-in too old", 401,
     "sign-in too old", 4),
    ("method-not-covered", MAIN, "POST", "/reports/q", ADMIN, False, "/reports/q", "forbidden", "forbidden", 403,
     "method not covered by the winning pattern", 8),
    ("deny", MAIN, "GET", "/internal/x", ADMIN, False, "/internal/x", "forbidden", "forbidden", 403, "deny rule", 11),
    ("public", MAIN, "GET", "/static/app.css", ANON, False, "/static/app.css", "allow", "allow", 200, "allowed", 13),
    ("encoded-dotdot", MAIN, "GET", "/static/%2e%2e/admin", ANON, False, "/admin", "login", "sign-in required", 401,
     "sign-in required", 4),
    ("raw-utf8", MAIN, "GET", "/caf\u00e9", STAFF, False, "/caf\u00e9", "allow", "allow", 200, "allowed", 2),
    ("absolute-form", MAIN, "GET", "https://example.com/internal/x?q", ADMIN, False, "/internal/x", "forbidden",
     "forbidden", 403, "deny rule", 11),
    ("params-allowed", MAIN, "GET", "/static;x=1/..;/admin", ANON, True, "/admin", "login", "sign-in required", 401,
     "sign-in required", 4),
    ("default-deny", PARTIAL, "GET", "/other", ADMIN, False, "/other", "forbidden", "forbidden", 403,
     "no rule: default deny", None),
    ("folded", FOLDED, "GET", "/ADMIN/x", STAFF, False, "/ADMIN/x", "forbidden", "forbidden", 403, "role required", 2),
    ("encoded-slash", MAIN, "GET", "/a%2fb", ADMIN, False, None, "rejected", "rejected", 400, "encoded slash in path",
     None),
    ("params-refused", MAIN, "GET", "/static;x=1/..;/admin", ANON, False, None, "rejected", "rejected", 400,
     "path parameters not allowed", None),
    ("windows-name-in-folded-mode", FOLDED, "GET", "/admin./x", ANON, False, None, "rejected", "rejected", 400,
     "trailing dot or space in a path segment (Windows ignores it)", None),
    ("query-marker-is-not-path", MAIN, "GET", "/static/x?/../../admin", ANON, False, "/static/x", "allow", "allow",
     200, "allowed", 13),
]  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "method", "target", "principal", "allow_params", "canonical", "outcome", "status", "http", "reason",
     "line"),
    [c[1:] for c in EXPLAIN],
    ids=[c[0] for c in EXPLAIN],
)  # fmt: skip
def test_explain(
    policy: Policy,
    method: str,
    target: str,
    principal: Principal | None,
    allow_params: bool,
    canonical: str | None,
    outcome: str,
    status: str,
    http: int,
    reason: str,
    line: int | None,
) -> None:
    result = explain(policy, method, target, principal, allow_params=allow_params, now=NOW)
    data = result.as_json()
    assert (data["method"], data["target"], data["canonical"]) == (method, target, canonical)
    assert (data["outcome"], data["status"], data["http_status"], data["reason"]) == (outcome, status, http, reason)
    rule = data["rule"]
    assert (rule["line"] if isinstance(rule, dict) else None) == line
    assert (result.canonical is None) is (result.decision is None) is (result.rejected is not None)


def test_explain_lines_for_a_decision() -> None:
    result = explain(MAIN, "GET", "/a/../admin/x", STAFF, allow_params=False, now=NOW)
    assert result.lines() == [
        "request:   GET /a/../admin/x",
        "user:      sam, roles [staff]",
        "canonical: /admin/x",
        "decision:  forbidden (role required)",
        'rule:      policies/main.yaml:4  paths /admin/** roles [admin] fresh 1h30m  "administration"',
    ]


def test_explain_lines_show_the_forwarded_form_when_it_differs() -> None:
    lines = explain(MAIN, "GET", "/caf%c3%a9/%7e", ANON, allow_params=False).lines()
    assert lines[1:5] == [
        "user:      anonymous (no session)",
        "canonical: /caf\u00e9/~",
        "forwarded: /caf%C3%A9/~",
        "decision:  sign-in required",
    ]


def test_explain_lines_default_deny_and_rejection() -> None:
    assert explain(PARTIAL, "GET", "/x", ADMIN, allow_params=False).lines()[-1] == (
        "rule:      none: no rule matches (default deny)"
    )
    assert explain(MAIN, "GET", "/a/%252e%252e/admin", ADMIN, allow_params=False).lines()[-2:] == [
        "canonical: none",
        "decision:  400 bad request (double percent-encoding in path)",
    ]


def test_explain_notes_the_gateways_own_paths() -> None:
    assert explain(MAIN, "GET", "/.gateway/login", ANON, allow_params=False).lines()[-1].startswith("note:")
    assert not explain(MAIN, "GET", "/.gatewayx", ANON, allow_params=False).lines()[-1].startswith("note:")


def test_explain_json_shapes() -> None:
    data = explain(MAIN, "get", "/reports/%41", ADMIN, allow_params=False).as_json()
    assert data == {
        "method": "get",
        "target": "/reports/%41",
        "canonical": "/reports/A",
        "forwarded": "/reports/A",
        "status": "forbidden",
        "http_status": 403,
        "outcome": "forbidden",
        "reason": "role required",
        "rule": {"file": "policies/main.yaml", "line": 8, "pattern": "/reports/**", "access": "roles",
                 "roles": ["analyst"], "methods": ["GET", "HEAD"], "name": None},
    }  # fmt: skip
    rejected = explain(MAIN, "GET", "/a\\b", ADMIN, allow_params=False).as_json()
    assert (rejected["canonical"], rejected["forwarded"], rejected["rule"]) == (None, None, None)
    assert (rejected["outcome"], rejected["reason"]) == ("rejected", "backslash in path")


def test_explanation_is_frozen_data() -> None:
    result = explain(MAIN, "GET", "/", ANON, allow_params=False)
    assert isinstance(result, Explanation) and result.decision is not None
    assert result.decision.outcome is Outcome.LOGIN
    with pytest.raises(AttributeError):
        result.method = "POST"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('  - paths: ["/a"]\n    allow: anyone\n', "p.yaml:2  paths /a allow anyone"),
        ('  - paths: ["/a"]\n    deny: true\n    name: x\n', 'p.yaml:2  paths /a deny  "x"'),
        ('  - paths: ["/a"]\n    methods: [post, GET]\n    allow: authenticated\n    fresh: 90s\n',
         "p.yaml:2  paths /a allow authenticated methods [GET, HEAD, POST] fresh 1m30s"),
    ],
    ids=["anyone", "deny-named", "methods-fresh"],
)  # fmt: skip
def test_describe_rule(text: str, expected: str) -> None:
    (rule,) = parse_policy({"p.yaml": "rules:\n" + text}).rules
    assert describe_rule(rule) == expected


# ---- lookalike_siblings -----------------------------------------------------------------------------------

# (id, rules as "paths  access" lines, case_insensitive, lines of the rules warned about)
LOOKALIKES = [
    # Datasette serves table hr at /hr, /hr.csv, /hr.json, /hr.JSON: the obvious policy leaks it.
    ("datasette-obvious", ["/**  allow: authenticated", "/hr/**  roles: [hr]"], False, [4]),
    ("prefix-pattern-used", ["/**  allow: authenticated", "/hr*/**  roles: [hr]"], False, []),
    ("no-catch-all", ["/hr/**  roles: [hr]", "/static/**  allow: anyone", "/app/**  allow: authenticated"], False,
     []),
    ("deny", ["/**  allow: authenticated", "/internal/**  deny: true"], False, [4]),
    ("sign-in-under-anyone", ["/**  allow: anyone", "/app/**  allow: authenticated"], False, [4]),
    ("public-under-sign-in", ["/**  allow: authenticated", "/static/**  allow: anyone"], False, []),
    ("same-roles", ["/**  roles: [hr]", "/hr/**  roles: [hr]"], False, []),
    ("broader-roles-fewer", ["/**  roles: [hr]", "/hr/**  roles: [hr, admin]"], False, []),
    ("broader-roles-other", ["/**  roles: [staff]", "/hr/**  roles: [hr]"], False, [4]),
    ("broader-deny", ["/**  deny: true", "/hr/**  roles: [hr]"], False, []),
    ("nested", ["/**  allow: authenticated", "/db/*/salaries/**  deny: true"], False, [4]),
    ("broader-prefix", ["/h*/**  allow: authenticated", "/hr/**  roles: [hr]"], False, [4]),
    # A rule that does not cover /hr itself was written for the look-alikes: the operator chose.
    ("look-alikes-chosen", ["/hr.*/**  allow: authenticated", "/hr/**  roles: [hr]"], False, []),
    ("prefix-beside-literal", ["/**  allow: authenticated", "/hr/**  roles: [hr]", "/hr*/**  roles: [hr]",
                               "/HR*/**  roles: [hr]"], False, []),
    ("case-left-open", ["/**  allow: authenticated", "/hr/**  roles: [hr]", "/hr*/**  roles: [hr]"], False, [4]),
    ("case-folded-by-policy", ["/**  allow: authenticated", "/hr/**  roles: [hr]", "/hr*/**  roles: [hr]"], True,
     []),
    ("datasette-case-insensitive", ["/**  allow: authenticated", "/hr/**  roles: [hr]"], True, [4]),
    ("star-and-globstar-guard-nothing", ["/**  allow: authenticated", "/*/**  roles: [hr]", "/a/*/**  deny: true"],
     False, []),
    ("dead-rule-left-to-shadowed", ["/**  allow: authenticated", "/a  deny: true", "/a/  deny: true",
                                    "/a/*/**  deny: true", "/a/**  deny: true"], False, []),
]  # fmt: skip


def lookalike_lines(policy: Policy) -> list[int]:
    return [p.line for p in lookalike_siblings(policy)]


@pytest.mark.parametrize(("lines", "case_insensitive", "expected"), [c[1:] for c in LOOKALIKES],
                         ids=[c[0] for c in LOOKALIKES])  # fmt: skip
def test_lookalike_siblings(lines: list[str], case_insensitive: bool, expected: list[int]) -> None:
    policy = parse_policy({"p.yaml": rules_yaml(*lines)}, case_insensitive=case_insensitive)
    assert lookalike_lines(policy) == expected


DATASETTE = parse_policy({"p.yaml": rules_yaml("/**  allow: authenticated", "/hr/**  roles: [hr]")})


def test_lookalike_message_names_both_rules_and_the_fix() -> None:
    (problem,) = lookalike_siblings(DATASETTE)
    assert (problem.file, problem.line) == ("p.yaml", 4)
    assert problem.message == (
        "'/hr/**' guards /hr but not look-alikes such as /hr.csv, /hr.json, /hr%20, /HR: the broader rule "
        "p.yaml:2 ('/**' allow authenticated) decides those and lets in users '/hr/**' refuses, and apps often "
        "serve one resource under several such URLs; use '/hr*/**' (and [policy] case_insensitive = true if the "
        "app ignores case), or an allow-list without a catch-all"
    )


def test_every_lookalike_shown_is_really_open() -> None:
    # The warning is a proof: a user without hr opens each URL shown and is refused at /hr.
    staff = Principal("sam", frozenset({"staff"}), auth_time=NOW)
    for url in ("/hr.csv", "/hr.json", "/hr%20", "/HR"):
        assert explain(DATASETTE, "GET", url, staff, allow_params=False).outcome == "allow", url
    assert explain(DATASETTE, "GET", "/hr", staff, allow_params=False).outcome == "forbidden"


@pytest.mark.parametrize(
    ("lines", "case_insensitive", "shown", "advice"),
    [
        (["/**  allow: authenticated", "/hr/**  roles: [hr]"], True, "/hr.csv, /hr.json:", "use '/hr*/**', or"),
        (["/**  allow: authenticated", "/hr/**  roles: [hr]", "/hr*/**  roles: [hr]"], False, "/HR:",
         "set [policy] case_insensitive = true if the app ignores case, or"),
        (["/**  allow: authenticated", "/hr/**  roles: [hr]", "/hr.csv  allow: authenticated"], False,
         "/hr.json, /hr%20, /HR:", "use '/hr*/**' (and"),
        (["/**  allow: authenticated", "/db/*/salaries/**  deny: true"], False,
         "/db/*/salaries.csv, /db/*/salaries.json, /db/*/salaries%20, /db/*/SALARIES:", "use '/db/*/salaries*/**'"),
        (["/**  allow: authenticated", "/hr/**  roles: [hr]", "/hr.*/**  roles: [hr]", "/HR*/**  roles: [hr]"], False,
         "/hr%20, /hr-x:", "use '/hr*/**', or"),
        (["/**  allow: authenticated", "/hr/**  roles: [hr]", "/hr  allow: authenticated"], False,
         "/hr.csv/…, /hr.json/…", "guards /hr/… but"),
    ],
    ids=["no-case-or-space-when-folded", "case-only", "chosen-literal-not-shown", "nested", "other-suffixes",
         "home-below-x"],
)  # fmt: skip
def test_lookalike_message_shows_what_leaks(lines: list[str], case_insensitive: bool, shown: str, advice: str) -> None:
    (problem,) = lookalike_siblings(parse_policy({"p.yaml": rules_yaml(*lines)}, case_insensitive=case_insensitive))
    assert f"such as {shown}" in problem.message
    assert advice in problem.message


def test_lookalike_compares_methods_and_freshness() -> None:
    def warned(text: str) -> list[int]:
        return lookalike_lines(parse_policy({"p.yaml": "rules:\n" + text}))

    catch_all = "  - paths: ['/**']\n    allow: authenticated\n"
    # Fresh sign-in required at /admin, any sign-in at /admin.json.
    assert warned(catch_all + "  - paths: ['/admin/**']\n    allow: authenticated\n    fresh: 5m\n") == [4]
    assert warned("  - paths: ['/**']\n    allow: authenticated\n    fresh: 5m\n"
                  "  - paths: ['/admin/**']\n    allow: authenticated\n    fresh: 5m\n") == []  # fmt: skip
    assert warned("  - paths: ['/**']\n    allow: authenticated\n    fresh: 1m\n"
                  "  - paths: ['/admin/**']\n    allow: authenticated\n    fresh: 5m\n") == []  # fmt: skip
    # Read-only for analysts at /reports: a GET of /reports.json by anyone signed in is the leak.
    assert warned(catch_all + "  - paths: ['/reports/**']\n    methods: [GET]\n    roles: [analyst]\n") == [4]
    # The catch-all only takes POST from hr users: nobody gains at the look-alikes.
    assert warned("  - paths: ['/**']\n    methods: [POST]\n    roles: [hr]\n"
                  "  - paths: ['/hr/**']\n    roles: [hr]\n") == []  # fmt: skip
    # Two rules share /hr/**: the one refusing the leaking method is named.
    assert warned(catch_all + "  - paths: ['/hr/**']\n    methods: [GET]\n    allow: authenticated\n"
                  "  - paths: ['/hr/**']\n    methods: [POST]\n    roles: [hr]\n") == [7]  # fmt: skip


def test_no_rules_no_lookalikes() -> None:
    assert lookalike_siblings(parse_policy({"p.yaml": "rules: []\n"})) == []


# ---- the README's Datasette example: what it promises is what the engine does ------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(first_line: str, language: str = "yaml") -> str:
    """The README code block whose first line starts with ``first_line``."""
    blocks = README.read_text(encoding="utf-8").split("```" + language + "\n")[1:]
    (block,) = [b.split("```", 1)[0] for b in blocks if b.startswith(first_line)]
    return block


def test_readme_obvious_datasette_policy_warns_as_shown() -> None:
    obvious = readme_block('rules:\n  - paths: ["/**"]\n    allow: authenticated       # everything else')
    (problem,) = lookalike_siblings(parse_policy({"policies/main.yaml": obvious}))
    shown = readme_block("policies/main.yaml:4: warning:", language="").strip()
    assert f"{problem.file}:{problem.line}: warning: {problem.message}" == shown


RECOMMENDED_DATASETTE = [
    # (target, roles or None for anonymous, allowed)
    ("/", [], False),  # the index lists every database's tables: hr only
    ("/-/static/app.css", [], True),
    ("/public", [], True),
    ("/public.json", [], True),
    ("/public.csv?sql=select+1", [], True),
    ("/public/things.csv", [], True),
    ("/publicity_budget", [], False),
    ("/hr", [], False),
    ("/hr.csv?sql=select+*+from+salaries", [], False),
    ("/hr.json", [], False),
    ("/hr.JSON", [], False),
    ("/hr.db", [], False),
    ("/hr/employees.csv", [], False),
    ("/~68r/employees.csv", [], False),
    ("/%7E68r/employees.csv", [], False),
    ("/HR", [], False),
    ("/hr%20", [], False),
    ("/-/databases.json", [], False),
    ("/_memory?sql=select+*+from+hr.salaries", [], False),
    ("/", ["hr"], True),
    ("/hr.csv", ["hr"], True),
    ("/hr/employees", ["hr"], True),
    ("/hr.db", ["hr"], False),  # a shape nobody listed: refused to holders of hr too
    ("/~68r/employees.csv", ["hr"], False),
    ("/public", None, False),
]


def test_readme_recommended_datasette_policy() -> None:
    policy = parse_policy({"policies/main.yaml": readme_block("# Datasette behind the gateway")})
    assert shadowed_rules(policy) == [] and lookalike_siblings(policy) == []
    for target, roles, allowed in RECOMMENDED_DATASETTE:
        who = None if roles is None else Principal("sam", frozenset(roles), auth_time=NOW)
        result = explain(policy, "GET", target, who, allow_params=False, now=NOW)
        assert (result.outcome == "allow") is allowed, (target, roles, result.lines())
