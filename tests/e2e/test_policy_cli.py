"""gateway policy check / explain, as an operator runs them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.harness import Gateway

POLICY = """rules:
  - paths: ["/**"]
    allow: authenticated
  - name: administration
    paths: ["/admin/**"]
    roles: [admin]
  - paths: ["/reports/**"]
    methods: [GET]
    roles: [analyst, auditor]
  - paths: ["/internal/**"]
    deny: true
"""


@pytest.fixture
def offline(make_gateway: Any) -> Gateway:
    gateway: Gateway = make_gateway(policy=POLICY, users={"ann": "admin", "sam": "staff"}, start=False)
    return gateway


def test_check_ok_with_warnings(offline: Gateway) -> None:
    (offline.directory / "policies" / "more.yaml").write_text(
        'rules:\n  - paths: ["/a"]\n    allow: anyone\n  - paths: ["/a/**"]\n    roles: [admin]\n'
        '  - paths: ["/a/"]\n    allow: anyone\n  - paths: ["/a/*/**"]\n    allow: anyone\n')
    result = offline.cli("policy", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    # /a/** can never decide: /a, /a/ and /a/*/** take every path it matches.
    assert any(line.startswith(f"{offline.directory}/policies/more.yaml:4:") and "never decide" in line for line in lines)
    # Roles no user holds (analyst, auditor) are named with the rule's line.
    assert any("main.yaml:7:" in line and "'analyst'" in line for line in lines)
    assert any("'auditor'" in line for line in lines)
    assert not any("'admin'" in line for line in lines)


def test_check_errors_exit_2_with_every_problem(offline: Gateway) -> None:
    (offline.directory / "policies" / "bad.yaml").write_text(
        'rules:\n  - paths: ["/x/**"]\n    allow: everyone\n  - paths: ["/y"]\n    deny: true\n    bogus: 1\n'
        '  - paths: ["/**"]\n    allow: anyone\n')
    result = offline.cli("policy", "check")
    assert result.returncode == 2
    out = result.stdout
    assert "bad.yaml:3:" in out and "bad.yaml:6:" in out
    assert "bad.yaml:7" in out and "main.yaml:2" in out and "conflicts with" in out  # same pattern
    assert "Traceback" not in result.stderr


def test_check_dir_without_config(offline: Gateway) -> None:
    result = offline.cli("policy", "check", "--dir", str(offline.directory / "policies"), config=False)
    assert result.returncode == 0, result.stderr
    empty = offline.directory / "empty"
    empty.mkdir()
    result = offline.cli("policy", "check", "--dir", str(empty), config=False)
    assert result.returncode == 0 and "deni" in (result.stdout + result.stderr).lower()


@pytest.mark.parametrize(("args", "decision", "line"), [
    (["GET", "/admin/x", "--user", "ann"], "allow", ":4"),
    (["GET", "/admin/x", "--user", "sam"], "forbidden", ":4"),
    (["GET", "/admin/x"], "sign-in", ":4"),
    (["GET", "/public/../admin/x", "--roles", "admin"], "allow", ":4"),
    (["POST", "/reports/q", "--roles", "analyst"], "forbidden", ":7"),
    (["GET", "/internal/x", "--roles", "admin"], "forbidden", ":10"),
])
def test_explain(offline: Gateway, args: list[str], decision: str, line: str) -> None:
    result = offline.cli("policy", "explain", *args)
    assert result.returncode == 0, result.stderr
    assert decision in result.stdout.lower()
    assert f"main.yaml{line}" in result.stdout


def test_explain_json_and_rejections(offline: Gateway) -> None:
    result = offline.cli("policy", "explain", "GET", "/a/%2e%2e/admin/x?q=1", "--roles", "admin", "--json")
    data = json.loads(result.stdout)
    assert data["canonical"] == "/admin/x" and data["outcome"] == "allow"
    assert data["rule"]["line"] == 4 and data["rule"]["file"].endswith("main.yaml")
    rejected = json.loads(offline.cli("policy", "explain", "GET", "/a%2fb", "--json").stdout)
    assert rejected["canonical"] is None and rejected["outcome"] == "rejected"
    unknown = offline.cli("policy", "explain", "GET", "/x", "--user", "ghost")
    assert unknown.returncode == 1 and "no user named" in unknown.stderr
    both = offline.cli("policy", "explain", "GET", "/x", "--user", "ann", "--anonymous")
    assert both.returncode == 2


# The policy a new user writes for a Datasette whose hr database only role hr may read.
DATASETTE = """rules:
  - paths: ["/**"]
    allow: authenticated
  - name: the hr database
    paths: ["/hr/**"]
    roles: [hr]
"""


def test_check_warns_about_lookalikes_and_the_prefix_silences_it(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway(policy=DATASETTE, users={"hal": "hr", "sam": "staff"}, start=False)
    main = gateway.directory / "policies" / "main.yaml"
    result = gateway.cli("policy", "check")
    assert result.returncode == 0, result.stdout + result.stderr  # a warning, not an error
    (warning,) = [line for line in result.stdout.splitlines() if "look-alikes" in line]
    assert warning.startswith(f"{main}:4: warning: '/hr/**' guards /hr but not look-alikes such as /hr.csv, /hr.json")
    assert f"the broader rule {main}:2 ('/**' allow authenticated)" in warning
    assert "use '/hr*/**'" in warning and "allow-list without a catch-all" in warning
    assert "1 warning(s)" in result.stderr

    main.write_text(DATASETTE.replace('"/hr/**"', '"/hr*/**"'))
    result = gateway.cli("policy", "check")
    assert result.returncode == 0 and "look-alikes" not in result.stdout, result.stdout
    assert "warning" not in result.stdout


@pytest.mark.parametrize(("target", "who", "decision"), [
    ("/hr.csv", ["--user", "sam"], "forbidden (role required)"),
    ("/hr.json?sql=select+*+from+salaries", ["--user", "sam"], "forbidden (role required)"),
    ("/hr%2Ejson", ["--user", "sam"], "forbidden (role required)"),
    ("/hr.csv", ["--user", "hal"], "allow"),
    ("/hr.csv", ["--anonymous"], "sign-in required"),
])  # fmt: skip
def test_explain_names_the_prefix_rule(make_gateway: Any, target: str, who: list[str], decision: str) -> None:
    gateway: Gateway = make_gateway(policy=DATASETTE.replace('"/hr/**"', '"/hr*/**"'),
                                    users={"hal": "hr", "sam": "staff"}, start=False)
    result = gateway.cli("policy", "explain", "GET", target, *who)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"decision:  {decision}" in lines
    main = gateway.directory / "policies" / "main.yaml"
    assert f'rule:      {main}:4  paths /hr*/** roles [hr]  "the hr database"' in lines
    data = json.loads(gateway.cli("policy", "explain", "GET", target, *who, "--json").stdout)
    assert (data["rule"]["pattern"], data["rule"]["line"]) == ("/hr*/**", 4)
