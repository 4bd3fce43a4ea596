"""The rule keys `mfa: true` and `tokens: false` (issue 14): loaded with file:line problems, decided
by the engine, explained, and turned by the gate into a 401 `mfa_required` (never a pass)."""

from __future__ import annotations

from textwrap import dedent

import pytest

from gateway.policy import Outcome, PolicyError, Principal, decide, parse_policy
from gateway.policy.analysis import describe_rule, explain

NOW = 1_700_000_000.0
POLICY = parse_policy({"p.yaml": dedent("""\
    rules:
      - paths: ["/**"]
        allow: authenticated
      - paths: ["/payroll/**"]
        roles: [hr]
        mfa: true
      - paths: ["/account/**"]
        allow: authenticated
        tokens: false
      - paths: ["/api/**"]
        allow: authenticated
        tokens: true
        mfa: false
    """)})


def who(*roles: str, mfa: bool = False, token: bool = False) -> Principal:
    return Principal("ann", frozenset(roles), NOW, mfa=mfa, token=token)


@pytest.mark.parametrize(("principal", "path", "outcome", "reason"), [
    (who("hr"), "/payroll/x", Outcome.MFA, "second factor required"),
    (who("hr", mfa=True), "/payroll/x", Outcome.ALLOW, "allowed"),
    (who("staff", mfa=True), "/payroll/x", Outcome.FORBIDDEN, "role required"),  # the role first
    (who("staff"), "/payroll/x", Outcome.FORBIDDEN, "role required"),  # no second-factor prompt
    (None, "/payroll/x", Outcome.LOGIN, "sign-in required"),
    (who("hr", token=True), "/payroll/x", Outcome.FORBIDDEN, "token without a second factor"),
    (who("hr", token=True, mfa=True), "/payroll/x", Outcome.ALLOW, "allowed"),
    (who(token=True), "/account/settings", Outcome.FORBIDDEN, "tokens not allowed"),
    (who(), "/account/settings", Outcome.ALLOW, "allowed"),
    (who(token=True), "/api/v1", Outcome.ALLOW, "allowed"),
    (who(token=True), "/elsewhere", Outcome.ALLOW, "allowed"),  # tokens are allowed by default
])
def test_decisions(principal: Principal | None, path: str, outcome: Outcome, reason: str) -> None:
    decision = decide(POLICY, principal, "GET", path, now=NOW)
    assert (decision.outcome, decision.reason) == (outcome, reason)


@pytest.mark.parametrize(("rule", "message"), [
    ('roles: [hr]\n    mfa: "yes"', "p.yaml:4: mfa must be true or false"),
    ("roles: [hr]\n    mfa: 1", "p.yaml:4: mfa must be true or false"),
    ("allow: authenticated\n    tokens: [false]", "p.yaml:4: tokens must be true or false"),
    ("allow: anyone\n    mfa: true", "p.yaml:4: 'mfa' is not allowed on an 'allow: anyone' rule"),
    ("deny: true\n    tokens: false", "p.yaml:4: 'tokens' is not allowed on a 'deny' rule"),
])
def test_bad_values_are_file_line_problems(rule: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy({"p.yaml": f'rules:\n  - paths: ["/x"]\n    {rule}\n'})
    assert any(str(problem).startswith(message) for problem in caught.value.problems), caught.value.problems


def test_explain_and_describe_show_the_keys() -> None:
    rule = next(r for r in POLICY.rules if r.pattern == "/payroll/**")
    assert describe_rule(rule).endswith("roles [hr] mfa")
    account = next(r for r in POLICY.rules if r.pattern == "/account/**")
    assert describe_rule(account).endswith("allow authenticated no tokens")
    result = explain(POLICY, "GET", "/payroll/x", who("hr"), allow_params=False)
    assert result.status == "second factor required" and result.http_status == 401
    assert any(line.startswith("decision:  second factor required") for line in result.lines())
