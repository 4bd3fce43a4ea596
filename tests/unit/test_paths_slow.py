"""The long property run for canonical paths: ``pytest -m slow tests/unit/test_paths_slow.py``.

The same properties as test_paths.py, with 100,000 fresh examples each, plus one about the policy decision:
whatever a lenient backend makes of what we forward (or of what the client sent), the policy decides on it
exactly as it decided on the canonical path.
"""

from __future__ import annotations

from textwrap import dedent

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy import PathError, Policy, Principal, canonicalize, decide, parse_policy
from tests.unit.test_paths import TOKENS, _check_properties, lenient_upstream, targets

pytestmark = pytest.mark.slow

LONG = settings(max_examples=100_000, deadline=None, derandomize=False)


@pytest.fixture(autouse=True)
def _only_when_asked(request: pytest.FixtureRequest) -> None:
    # The marker alone does not keep a plain `pytest` run short: it needs -m slow to run at all.
    if "slow" not in str(request.config.getoption("markexpr") or ""):
        pytest.skip("long property run: select it with -m slow")


# Names a case-ignoring backend could read as another name, and case variants of the policy's names.
FOLDING_TOKENS = [
    *TOKENS, "admin", "ADMIN", "Admin", "%41dmin", "adm%C4%B1n", "\u0131", "%E2%84%AA", "\u017f", "\u00df", "SS",
    "public", "PUBLIC", "internal", "Internal", "~1", ":", "::$DATA", "%20", " ",
]  # fmt: skip
folding_targets = st.lists(st.sampled_from(FOLDING_TOKENS), max_size=14).map(lambda parts: "/" + "".join(parts))


@LONG
@given(targets)
def test_properties_default(target: str) -> None:
    _check_properties(target, allow_params=False)


@LONG
@given(targets)
def test_properties_with_params(target: str) -> None:
    _check_properties(target, allow_params=True)


@LONG
@given(folding_targets, st.booleans())
def test_properties_case_insensitive(target: str, allow_params: bool) -> None:
    try:
        result = canonicalize(target.encode(), allow_params=allow_params, case_insensitive=True)
    except PathError:
        return
    assert canonicalize(result.forward.encode(), allow_params=allow_params, case_insensitive=True) == result
    # A backend that ignores case lands on the decided path up to case, which is how the policy matches then.
    for decodes in (1, 2):
        assert lenient_upstream(result.forward, decodes).casefold() == result.decision.casefold()
    assert lenient_upstream(target, 1).casefold() == result.decision.casefold()


POLICY_TEXT = dedent(
    """\
    rules:
      - paths: ["/admin/**"]
        roles: [admin]
      - paths: ["/public/**"]
        allow: anyone
      - paths: ["/**"]
        allow: authenticated
      - paths: ["/internal/**"]
        deny: true
    """
)
POLICIES = {folded: parse_policy({"p.yaml": POLICY_TEXT}, case_insensitive=folded) for folded in (False, True)}
PRINCIPALS = [None, Principal("sam", frozenset({"staff"}), auth_time=0.0)]

# Segment-shaped targets, so that most of them reach a named rule (run-together tokens mostly hit "/**").
SEPARATORS = [*["/"] * 8, "//", "/./", "/%2e/", "/../", "/%2e%2e/", "/..;/", "\\", "%2f", "%5c"]
SEGMENTS = [
    "admin", "ADMIN", "Admin", "%61dmin", "adm%69n", "adm%C4%B1n", "%C4%B0nternal", "admin.", "admin%20", "ADMINI~1",
    "admin::$DATA", "admin;x=1", "%3Badmin", "public", "PUBLIC", "internal", "Internal", "INTERNAL", "x", "", ".",
    "..", "%2e", "%2E%2e", "%252e%252e", "\u017f", "%E2%84%AA", "caf%C3%A9", "stra\u00dfe",
]  # fmt: skip
rule_targets = st.lists(st.tuples(st.sampled_from(SEPARATORS), st.sampled_from(SEGMENTS)), min_size=1, max_size=5).map(
    lambda pairs: "".join(sep + seg for sep, seg in pairs)
)
decision_targets = rule_targets | folding_targets


def _check_same_decision(policy: Policy, target: str, allow_params: bool) -> None:
    try:
        result = canonicalize(target.encode(), allow_params=allow_params, case_insensitive=policy.case_insensitive)
    except PathError:
        return
    readings = [lenient_upstream(result.forward, 1), lenient_upstream(result.forward, 2), lenient_upstream(target, 1)]
    if policy.case_insensitive:
        # The backend ignores case: by Unicode folding or, like .NET, by upper-casing.
        readings += [r.casefold() for r in readings] + [r.upper() for r in readings]
    for principal in PRINCIPALS:
        expected = decide(policy, principal, "GET", result.decision)
        for reading in readings:
            assert decide(policy, principal, "GET", reading) == expected, (reading, result.decision)


@LONG
@given(decision_targets, st.booleans())
def test_decision_same_for_lenient_upstream(target: str, allow_params: bool) -> None:
    _check_same_decision(POLICIES[False], target, allow_params)


@LONG
@given(decision_targets, st.booleans())
def test_decision_same_for_lenient_upstream_case_insensitive(target: str, allow_params: bool) -> None:
    _check_same_decision(POLICIES[True], target, allow_params)
