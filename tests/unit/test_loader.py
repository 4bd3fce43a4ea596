from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from gateway.policy.loader import PolicyError, load_policy, parse_policy
from gateway.policy.model import Access, Problem

CONTRACT = dedent(
    """\
    rules:
      - paths: ["/static/**", "/favicon.ico"]
        allow: anyone              # no sign-in needed
      - paths: ["/**"]
        allow: authenticated       # any signed-in user
      - paths: ["/admin/**"]
        roles: [admin]             # signed-in users holding at least one of these roles
        fresh: 15m                 # optional: sign-in must be at most this old, else re-authenticate
      - paths: ["/reports/**"]
        methods: [GET, HEAD]       # optional: the rule only covers these methods
        roles: [analyst, admin]
      - paths: ["/internal/**"]
        deny: true                 # nobody, whatever their roles
    """
)


def test_contract_example_loads() -> None:
    policy = parse_policy({"main.yaml": CONTRACT})
    summary = [(r.pattern, r.access, r.line) for r in policy.rules]
    assert summary == [
        ("/static/**", Access.ANYONE, 2),
        ("/favicon.ico", Access.ANYONE, 2),
        ("/**", Access.AUTHENTICATED, 4),
        ("/admin/**", Access.ROLES, 6),
        ("/reports/**", Access.ROLES, 9),
        ("/internal/**", Access.DENY, 12),
    ]
    admin, reports = policy.rules[3], policy.rules[4]
    assert admin.roles == frozenset({"admin"}) and admin.fresh == 900 and admin.methods is None
    assert reports.methods == frozenset({"GET", "HEAD"}) and reports.roles == frozenset({"analyst", "admin"})
    assert {r.file for r in policy.rules} == {"main.yaml"}
    assert policy.files == ("main.yaml",) and policy.warnings == ()


def test_optional_fields() -> None:
    text = 'rules:\n  - paths: ["/a"]\n    methods: [get, Post]\n    allow: authenticated\n    name: "the A page"\n'
    (only,) = parse_policy({"x.yaml": text}).rules
    assert only.methods == frozenset({"GET", "HEAD", "POST"})
    assert only.name == "the A page" and only.fresh is None


def test_empty_rule_list_is_allowed_with_a_warning() -> None:
    policy = parse_policy({"a.yaml": "rules: []\n"})
    assert policy.rules == ()
    assert [p.message for p in policy.warnings] == ["no rules: every request is denied"]


# (file text, expected (line, message fragment) problems, in order)
BAD_FILES = [
    ("empty-file", "", [(1, "empty policy file")]),
    ("comment-only", "# nothing\n", [(1, "empty policy file")]),
    ("rules-null", "# x\nrules:\n", [(2, "empty policy file")]),
    ("top-level-list", "- paths: [/a]\n", [(1, "top level must be a mapping")]),
    ("top-level-scalar", "hello\n", [(1, "top level must be a mapping")]),
    ("missing-rules", "rule:\n  - x\n", [(1, "unknown top-level key 'rule'"), (1, "missing key 'rules'")]),
    ("extra-top-key", "rules: []\nversion: 2\n", [(2, "unknown top-level key 'version'")]),
    ("rules-not-list", "rules:\n  paths: [/a]\n", [(2, "'rules' must be a list")]),
    ("duplicate-top-key", "rules: []\nrules: []\n", [(2, "duplicate key 'rules'")]),
    ("syntax-error", "rules:\n  - paths: [/a\n    allow: anyone\n", [(3, "YAML syntax error")]),
    ("bad-indent", "rules:\n  - paths: [/a]\n   allow: anyone\n", [(3, "YAML syntax error")]),
    ("tab-character", "rules:\n\t- x\n", [(2, "YAML syntax error")]),
    (
        "control-character",
        "rules:\n  - paths: [/a]\n    allow: any\x01one\n",
        [(3, "YAML error: unacceptable character")],
    ),
    (
        "undefined-alias",
        "rules:\n  - paths: [/a]\n    allow: *nope\n",
        [(3, "YAML syntax error: found undefined alias")],
    ),
    ("two-documents", "rules: []\n---\nrules: []\n", [(2, "YAML syntax error")]),
    ("rule-not-mapping", "rules:\n  - /a\n", [(2, "a rule must be a mapping")]),
    ("unknown-key", "rules:\n  - paths: [/a]\n    allow: anyone\n    role: [x]\n", [(4, "unknown key 'role'")]),
    ("duplicate-rule-key", "rules:\n  - paths: [/a]\n    allow: anyone\n    allow: anyone\n", [(4, "duplicate key")]),
    ("missing-paths", "rules:\n  - allow: anyone\n", [(2, "missing 'paths'")]),
    ("paths-empty", "rules:\n  - paths: []\n    allow: anyone\n", [(2, "paths must be a non-empty list")]),
    ("paths-string", "rules:\n  - paths: /a\n    allow: anyone\n", [(2, "paths must be a non-empty list")]),
    (
        "paths-not-strings",
        "rules:\n  - paths:\n      - /a\n      - 12\n      - [/b]\n    allow: anyone\n",
        [(4, "each pattern must be a string"), (5, "each pattern must be a string")],
    ),
    (
        "bad-patterns",
        "rules:\n  - paths:\n      - /ok\n      - /a*b\n      - /**/x\n    allow: anyone\n",
        [(4, "bad pattern '/a*b': * must be a whole segment"), (5, "bad pattern '/**/x'")],
    ),
    (
        "bad-prefix-shapes",
        "rules:\n  - paths:\n      - /hr*/**\n      - /*x\n      - /a*b/**\n      - /**x\n      - /hr**\n    roles: [hr]\n",
        [(4, "bad pattern '/*x': * must be a whole segment (*) or end one (name*)"), (5, "bad pattern '/a*b/**'"),
         (6, "bad pattern '/**x'"), (7, "bad pattern '/hr**'")],
    ),
    ("pattern-twice", "rules:\n  - paths: [/a, /b,\n      /a]\n    allow: anyone\n", [(3, "listed twice")]),
    ("prefix-twice", "rules:\n  - paths: ['/hr*/**', '/a',\n      '/hr*/**']\n    allow: anyone\n", [(3, "listed twice")]),
    ("no-access", "rules:\n  - paths: [/a]\n", [(2, "exactly one of allow, roles, deny (found none)")]),
    (
        "two-access",
        "rules:\n  - paths: [/a]\n    allow: anyone\n    deny: true\n",
        [(2, "exactly one of allow, roles, deny (found allow and deny)")],
    ),
    ("allow-bad-value", "rules:\n  - paths: [/a]\n    allow: everyone\n", [(3, "allow must be 'anyone' or")]),
    ("allow-bool", "rules:\n  - paths: [/a]\n    allow: yes\n", [(3, "allow must be a string (got 'yes'")]),
    ("allow-list", "rules:\n  - paths: [/a]\n    allow: [anyone]\n", [(3, "allow must be a string")]),
    ("deny-false", "rules:\n  - paths: [/a]\n    deny: false\n", [(3, "deny must be exactly true")]),
    ("deny-string", "rules:\n  - paths: [/a]\n    deny: 'true'\n", [(3, "deny must be exactly true")]),
    ("roles-empty", "rules:\n  - paths: [/a]\n    roles: []\n", [(3, "roles must be a non-empty list")]),
    ("roles-string", "rules:\n  - paths: [/a]\n    roles: admin\n", [(3, "roles must be a non-empty list")]),
    ("role-bad-name", "rules:\n  - paths: [/a]\n    roles: [ok, 'a b']\n", [(3, "bad role name 'a b'")]),
    ("role-number", "rules:\n  - paths: [/a]\n    roles:\n      - 7\n", [(4, "each role name must be a string")]),
    ("methods-empty", "rules:\n  - paths: [/a]\n    methods: []\n    allow: anyone\n", [(3, "methods must be")]),
    (
        "method-bad-token",
        "rules:\n  - paths: [/a]\n    methods: [GET, 'PO ST']\n    allow: anyone\n",
        [(3, "bad HTTP method 'PO ST'")],
    ),
    ("fresh-bad", "rules:\n  - paths: [/a]\n    fresh: soon\n    roles: [a]\n", [(3, "fresh: expected a duration")]),
    ("fresh-number", "rules:\n  - paths: [/a]\n    fresh: 90\n    roles: [a]\n", [(3, "fresh: expected a duration")]),
    (
        "fresh-on-anyone",
        "rules:\n  - paths: [/a]\n    allow: anyone\n    fresh: 5m\n",
        [(4, "'fresh' is not allowed on an 'allow: anyone' rule")],
    ),
    (
        "fresh-on-deny",
        "rules:\n  - paths: [/a]\n    deny: true\n    fresh: 5m\n",
        [(4, "not allowed on a 'deny' rule")],
    ),
    ("name-not-string", "rules:\n  - paths: [/a]\n    allow: anyone\n    name: [x]\n", [(4, "name must be a string")]),
    (
        "alias-not-a-list",
        "x: &p /a\nrules:\n  - paths: *p\n    allow: anyone\n",
        [(1, "unknown top-level key 'x'"), (3, "paths must be a non-empty list")],
    ),
    (
        "merge-key",
        "rules:\n  - &base\n    paths: [/a]\n    allow: anyone\n  - <<: *base\n    paths: [/b]\n",
        [(5, "merge keys (<<) are not supported"), (5, "exactly one of allow, roles, deny")],
    ),
    (
        "python-tag",
        "rules:\n  - paths: [!!python/name:os.system /a]\n    allow: anyone\n",
        [(2, "must be a string (unsupported tag")],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_file(text: str, expected: list[tuple[int, str]]) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy({"p.yaml": text})
    problems = caught.value.problems
    assert [p.file for p in problems] == ["p.yaml"] * len(problems)
    assert [p.line for p in problems] == [line for line, _ in expected], problems
    for problem, (_, fragment) in zip(problems, expected, strict=True):
        assert fragment in problem.message


def test_alias_to_a_list_is_fine() -> None:
    text = (
        "rules:\n  - paths: &p [/a, /b]\n    methods: [GET]\n    allow: anyone\n"
        "  - paths: *p\n    methods: [POST]\n    deny: true\n"
    )
    assert [r.pattern for r in parse_policy({"a.yaml": text}).rules] == ["/a", "/b", "/a", "/b"]


def test_every_problem_in_every_file_is_reported() -> None:
    sources = {
        "b.yaml": "rules:\n  - paths: [/a]\n    allow: nobody\n  - paths: [x]\n    deny: true\n",
        "a.yaml": "rules: 3\n",
    }
    with pytest.raises(PolicyError) as caught:
        parse_policy(sources)
    assert [str(p) for p in caught.value.problems] == [
        "a.yaml:1: 'rules' must be a list",
        "b.yaml:3: allow must be 'anyone' or 'authenticated', not 'nobody'",
        "b.yaml:4: bad pattern 'x': a pattern must start with /",
    ]
    assert str(caught.value) == "\n".join(str(p) for p in caught.value.problems)


CONFLICTS = [
    ("same-pattern", "- {paths: [/a], allow: anyone}", "- {paths: [/a], deny: true}", True),
    ("no-methods-vs-methods", "- {paths: [/a], allow: anyone}", "- {paths: [/a], methods: [PUT], deny: true}", True),
    ("get-implies-head", "- {paths: [/a], methods: [GET], allow: anyone}",
     "- {paths: [/a], methods: [HEAD], deny: true}", True),
    ("disjoint-methods", "- {paths: [/a], methods: [GET], allow: anyone}",
     "- {paths: [/a], methods: [POST], deny: true}", False),
    ("different-pattern", "- {paths: [/a/*], allow: anyone}", "- {paths: [/a/**], deny: true}", False),
    ("case-differs", "- {paths: [/Admin], allow: anyone}", "- {paths: [/admin], deny: true}", False),
    ("same-prefix", "- {paths: ['/hr*/**'], roles: [hr]}", "- {paths: ['/hr*/**'], allow: authenticated}", True),
    ("same-prefix-overlapping-methods", "- {paths: ['/hr*'], methods: [GET, POST], roles: [hr]}",
     "- {paths: ['/hr*'], methods: [POST], deny: true}", True),
    ("same-prefix-disjoint-methods", "- {paths: ['/hr*'], methods: [GET], roles: [hr]}",
     "- {paths: ['/hr*'], methods: [POST], deny: true}", False),
    ("prefix-vs-literal", "- {paths: ['/hr*/**'], roles: [hr]}", "- {paths: ['/hr/**'], roles: [hr]}", False),
    ("prefix-vs-star", "- {paths: ['/hr*'], roles: [hr]}", "- {paths: ['/*'], deny: true}", False),
    ("prefix-vs-longer-prefix", "- {paths: ['/hr*'], roles: [hr]}", "- {paths: ['/hr.*'], deny: true}", False),
    ("prefix-ended-vs-globstar", "- {paths: ['/hr*'], roles: [hr]}", "- {paths: ['/hr*/**'], deny: true}", False),
    ("prefix-case-differs", "- {paths: ['/HR*/**'], roles: [hr]}", "- {paths: ['/hr*/**'], deny: true}", False),
]  # fmt: skip


@pytest.mark.parametrize(("first", "second", "conflict"), [c[1:] for c in CONFLICTS], ids=[c[0] for c in CONFLICTS])
def test_conflicts_across_files(first: str, second: str, conflict: bool) -> None:
    sources = {"10-base.yaml": f"# base\nrules:\n{first}\n", "20-more.yaml": f"rules:\n{second}\n"}
    if not conflict:
        assert len(parse_policy(sources).rules) == 2
        return
    with pytest.raises(PolicyError) as caught:
        parse_policy(sources)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == ("20-more.yaml", 2)
    assert problem.message.endswith("conflicts with 10-base.yaml:3 (same pattern, overlapping methods)")


def test_conflict_within_one_file() -> None:
    text = "rules:\n  - paths: [/x, /a/*]\n    allow: anyone\n  - paths: ['/a/*']\n    roles: [r]\n"
    with pytest.raises(PolicyError) as caught:
        parse_policy({"one.yaml": text})
    assert [str(p) for p in caught.value.problems] == [
        "one.yaml:4: '/a/*' conflicts with one.yaml:2 (same pattern, overlapping methods)"
    ]


def test_patterns_differing_in_case_conflict_when_case_insensitive() -> None:
    sources = {"a.yaml": "rules:\n  - paths: [/Admin/**]\n    allow: anyone\n  - paths: [/admin/**]\n    deny: true\n"}
    assert len(parse_policy(sources).rules) == 2
    with pytest.raises(PolicyError, match=r"a.yaml:4: '/admin/\*\*' conflicts with a.yaml:2"):
        parse_policy(sources, case_insensitive=True)


@pytest.mark.parametrize(("first", "second"), [("/HR*/**", "/hr*/**"), ("/Straße*", "/STRASSE*")])
def test_prefixes_differing_in_case_conflict_when_case_insensitive(first: str, second: str) -> None:
    sources = {"a.yaml": f"rules:\n  - paths: ['{first}']\n    roles: [hr]\n  - paths: ['{second}']\n    deny: true\n"}
    assert len(parse_policy(sources).rules) == 2
    with pytest.raises(PolicyError) as caught:
        parse_policy(sources, case_insensitive=True)
    assert [str(p) for p in caught.value.problems] == [
        f"a.yaml:4: {second!r} conflicts with a.yaml:2 (same pattern, overlapping methods)"
    ]


def test_prefix_rule_loads_with_its_line() -> None:
    text = "rules:\n  - paths: ['/**']\n    allow: authenticated\n  - paths: ['/hr*/**', /hr.csv]\n    roles: [hr]\n"
    policy = parse_policy({"p.yaml": text})
    assert [(r.pattern, r.access, r.line) for r in policy.rules] == [
        ("/**", Access.AUTHENTICATED, 2),
        ("/hr*/**", Access.ROLES, 4),
        ("/hr.csv", Access.ROLES, 4),
    ]


# ---- load_policy: the directory ---------------------------------------------------------------------------


def test_load_policy_reads_yaml_files_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "20-b.yaml").write_text("rules:\n  - paths: [/b]\n    allow: anyone\n")
    (tmp_path / "10-a.yaml").write_text("rules:\n  - paths: [/a]\n    allow: anyone\n")
    (tmp_path / "30-c.yml").write_text("this is not read: [\n")
    (tmp_path / ".#10-a.yaml").write_text("nor this: [\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.yaml").write_text("nor this: [\n")
    policy = load_policy(tmp_path)
    assert [r.pattern for r in policy.rules] == ["/a", "/b"]
    assert policy.files == (str(tmp_path / "10-a.yaml"), str(tmp_path / "20-b.yaml"))
    assert policy.rules[0].file == str(tmp_path / "10-a.yaml")


def test_load_policy_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("rules:\n  - paths: [/a]\n    allow: anyone\n    fresh: 1m\n")
    (tmp_path / "b.yaml").write_bytes(b"rules: [\xff]\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(str(tmp_path))
    assert [(p.file, p.line) for p in caught.value.problems] == [
        (str(tmp_path / "a.yaml"), 4),
        (str(tmp_path / "b.yaml"), 0),
    ]


def test_load_policy_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(PolicyError) as caught:
        load_policy(missing)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == (str(missing), 0)
    assert "cannot read policy directory" in problem.message


def test_load_policy_empty_directory_warns(tmp_path: Path) -> None:
    policy = load_policy(tmp_path)
    assert policy.rules == () and policy.files == ()
    assert policy.warnings == (Problem(str(tmp_path), 0, "no rules: every request is denied"),)


def test_case_insensitive_flag_is_kept() -> None:
    assert parse_policy({"a.yaml": "rules: []\n"}, case_insensitive=True).case_insensitive
