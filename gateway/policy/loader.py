"""Policy files (YAML) -> one compiled Policy, or every problem found, each naming its file and line.

The YAML is only *composed* (never constructed into Python objects wholesale): walking the node tree keeps
the line of every rule, key and list item, lets us reject duplicate keys and merge keys, and never expands
aliases.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]

from gateway.durations import parse_duration
from gateway.policy.model import Access, Policy, Problem, Rule
from gateway.policy.patterns import Pattern, PatternError, parse_pattern
from gateway.policy.snapshot import policy_version

POLICY_SUFFIX = ".yaml"
RULE_KEYS = ("paths", "allow", "roles", "deny", "methods", "fresh", "mfa", "tokens", "name")
ACCESS_KEYS = ("allow", "roles", "deny")

_ROLE = re.compile(r"[A-Za-z0-9_.:-]+")
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
_ALLOW = {"anyone": Access.ANYONE, "authenticated": Access.AUTHENTICATED}
_STR_TAG = "tag:yaml.org,2002:str"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_TRUE = frozenset({"true", "yes", "on"})
# LibYAML composes a 10,000-rule file about 10x faster; both keep the marks (lines) we report.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# What YAML 1.1 reads an unquoted scalar as, for the "quote it" hint.
_PLAIN_TYPES = {f"tag:yaml.org,2002:{t}": t for t in ("bool", "int", "float", "null", "timestamp")}


class PolicyError(Exception):
    """The policy cannot be loaded; ``problems`` lists every problem found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def load_policy(directory: str | Path, *, case_insensitive: bool = False) -> Policy:
    """Read every ``*.yaml`` file directly inside ``directory`` (sorted by name) into one Policy."""
    sources, problems = read_sources(directory)
    return _compile(sources, case_insensitive, str(directory), problems)


def read_sources(directory: str | Path) -> tuple[dict[str, str], list[Problem]]:
    """The text of every policy file in ``directory`` ({path: YAML}), and the files that could not be read."""
    folder = Path(directory)
    try:
        # Dotfiles are skipped like a shell's *.yaml would: editors leave lock and swap files there.
        names = sorted(
            p.name for p in folder.iterdir() if p.name.endswith(POLICY_SUFFIX) and not p.name.startswith(".")
        )
    except OSError as exc:
        raise PolicyError([Problem(str(directory), 0, f"cannot read policy directory: {exc.strerror}")]) from None
    sources: dict[str, str] = {}
    problems: list[Problem] = []
    for name in names:
        path = str(folder / name)
        try:
            sources[path] = (folder / name).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            problems.append(Problem(path, 0, "not valid UTF-8"))
        except OSError as exc:
            problems.append(Problem(path, 0, f"cannot read: {exc.strerror}"))
    return sources, problems


def parse_policy(sources: Mapping[str, str], *, case_insensitive: bool = False, origin: str = "<policy>") -> Policy:
    """Compile ``{file name: YAML text}`` (taken in name order) into one Policy; ``origin`` (the
    folder) is what a warning about the whole policy names."""
    return _compile(sources, case_insensitive, origin, [])


def _compile(sources: Mapping[str, str], case_insensitive: bool, origin: str, problems: list[Problem]) -> Policy:
    rules: list[Rule] = []
    for file in sorted(sources):
        reader = _FileReader(file, sources[file])
        rules.extend(reader.read())
        problems.extend(reader.problems)
    problems.extend(_conflicts(rules, case_insensitive))
    if problems:
        # File by file, top to bottom, whichever check found them (read, rule, conflict).
        raise PolicyError(sorted(problems, key=lambda p: (p.file, p.line)))
    warnings = () if rules else (Problem(origin, 0, "no rules: every request is denied"),)
    return Policy(
        rules=tuple(rules), case_insensitive=case_insensitive, files=tuple(sorted(sources)), warnings=warnings,
        version=policy_version(sources), sources=dict(sources),
    )


def _conflicts(rules: list[Rule], case_insensitive: bool) -> Iterable[Problem]:
    seen: dict[tuple[tuple[str, ...], bool], list[Rule]] = {}
    for rule in rules:
        same = seen.setdefault(parse_pattern(rule.pattern).key(case_insensitive), [])
        for other in same:
            if _overlap(rule.methods, other.methods):
                yield Problem(
                    rule.file,
                    rule.line,
                    f"{rule.pattern!r} conflicts with {other.where} (same pattern, overlapping methods)",
                )
                break
        same.append(rule)


def _overlap(a: frozenset[str] | None, b: frozenset[str] | None) -> bool:
    return a is None or b is None or not a.isdisjoint(b)


_Entry = tuple[Any, Any]  # (key node, value node) of a mapping


def _line(node: Any) -> int:
    return int(node.start_mark.line) + 1


class _FileReader:
    """Walks one file's node tree, collecting rules and problems."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.text = text
        self.problems: list[Problem] = []

    def problem(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))

    def read(self) -> list[Rule]:
        loader = _Loader(self.text)
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = int(mark.line) + 1 if mark is not None else 0
            problem = str(exc.problem or exc.context)
            if problem.startswith("but ") and exc.context:  # "expected X" lives in the context then
                problem = f"{exc.context} {problem}"
            self.problem(line, f"YAML syntax error: {problem}")
            return []
        except yaml.YAMLError as exc:  # ReaderError: a character YAML does not allow
            position = int(getattr(exc, "position", 0))
            reason = str(exc).splitlines()[0]  # the rest repeats the position we turn into a line
            self.problem(self.text.count("\n", 0, position) + 1, f"YAML error: {reason}")
            return []
        finally:
            loader.dispose()
        if root is None:
            self.problem(1, "empty policy file")
            return []
        top = self.mapping(root, "the top level")
        if top is None:
            return []
        for key, (key_node, _) in top.items():
            if key != "rules":
                self.problem(_line(key_node), f"unknown top-level key {key!r} (expected 'rules')")
        if "rules" not in top:
            self.problem(_line(root), "missing key 'rules'")
            return []
        key_node, value = top["rules"]
        if _is_null(value):
            self.problem(_line(key_node), "empty policy file")
            return []
        if not isinstance(value, yaml.SequenceNode):
            self.problem(_line(value), "'rules' must be a list")
            return []
        rules: list[Rule] = []
        for item in value.value:
            rules.extend(self.rule(item))
        return rules

    def mapping(self, node: Any, what: str) -> dict[str, _Entry] | None:
        """Keys -> (key node, value node), reporting duplicate, merge and non-string keys."""
        if not isinstance(node, yaml.MappingNode):
            self.problem(_line(node), f"{what} must be a mapping")
            return None
        result: dict[str, _Entry] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.problem(_line(key_node), "YAML merge keys (<<) are not supported")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(_line(key_node), "keys must be plain strings")
                continue
            key = str(key_node.value)
            if key in result:
                self.problem(_line(key_node), f"duplicate key {key!r}")
                continue
            result[key] = (key_node, value_node)
        return result

    def rule(self, node: Any) -> list[Rule]:
        line = _line(node)
        keys = self.mapping(node, "a rule")
        if keys is None:
            return []
        before = len(self.problems)
        for key, (key_node, _) in keys.items():
            if key not in RULE_KEYS:
                self.problem(_line(key_node), f"unknown key {key!r} (allowed: {', '.join(RULE_KEYS)})")
        access_keys = [k for k in ACCESS_KEYS if k in keys]
        if len(access_keys) != 1:
            found = f"found {' and '.join(access_keys)}" if access_keys else "found none"
            self.problem(line, f"a rule needs exactly one of allow, roles, deny ({found})")

        patterns = self.patterns(keys["paths"]) if "paths" in keys else None
        if "paths" not in keys:
            self.problem(line, "missing 'paths'")
        access, roles = self.access(keys)
        methods = self.methods(keys["methods"]) if "methods" in keys else None
        fresh = self.fresh(keys["fresh"]) if "fresh" in keys else None
        if "fresh" in keys and access in (Access.ANYONE, Access.DENY):
            kind = "an 'allow: anyone'" if access is Access.ANYONE else "a 'deny'"
            self.problem(_line(keys["fresh"][0]), f"'fresh' is not allowed on {kind} rule (it never checks a sign-in)")
        mfa = self.flag(keys, "mfa", default=False)
        tokens = self.flag(keys, "tokens", default=True)
        for key in ("mfa", "tokens"):
            if key in keys and access in (Access.ANYONE, Access.DENY):
                kind = "an 'allow: anyone'" if access is Access.ANYONE else "a 'deny'"
                self.problem(_line(keys[key][0]), f"{key!r} is not allowed on {kind} rule (it never checks a sign-in)")
        name = self.string(keys["name"][1], "name", _line(keys["name"][0])) if "name" in keys else None

        if len(self.problems) > before or access is None or not patterns:
            return []
        return [Rule(pattern, access, roles, methods, fresh, name, self.file, line, mfa=mfa, tokens=tokens)
                for pattern in patterns]

    def flag(self, keys: dict[str, _Entry], key: str, *, default: bool) -> bool:
        """``mfa: true`` / ``tokens: false``: a YAML boolean, nothing else (not "yes" as a string)."""
        if key not in keys:
            return default
        key_node, node = keys[key]
        if not (isinstance(node, yaml.ScalarNode) and node.tag == _BOOL_TAG):
            self.problem(_line(key_node), f"{key} must be true or false")
            return default
        return node.value.lower() in _TRUE

    # Each entry is (key node, value node). Errors about a whole value point at its key: through an alias
    # the value node would carry the line of the anchor, elsewhere in the file.

    def access(self, keys: dict[str, _Entry]) -> tuple[Access | None, frozenset[str]]:
        """The rule's access (None if missing or invalid) and its roles."""
        if "allow" in keys:
            key_node, node = keys["allow"]
            value = self.string(node, "allow", _line(key_node))
            if value is not None and value not in _ALLOW:
                self.problem(_line(key_node), f"allow must be 'anyone' or 'authenticated', not {value!r}")
            return (_ALLOW.get(value) if value is not None else None), frozenset()
        if "roles" in keys:
            roles = self.strings(keys["roles"], _ROLE, "role name")
            return (Access.ROLES if roles else None), frozenset(roles or ())
        if "deny" in keys:
            key_node, node = keys["deny"]
            if not (isinstance(node, yaml.ScalarNode) and node.tag == _BOOL_TAG and node.value.lower() in _TRUE):
                self.problem(_line(key_node), "deny must be exactly true")
                return None, frozenset()
            return Access.DENY, frozenset()
        return None, frozenset()

    def patterns(self, entry: _Entry) -> list[str] | None:
        items = self.strings(entry, None, "pattern")
        if items is None:
            return None
        seen: set[Pattern] = set()
        result: list[str] = []
        for text, item in zip(items, entry[1].value, strict=True):
            try:
                pattern = parse_pattern(text)
            except PatternError as exc:
                self.problem(_line(item), f"bad pattern {text!r}: {exc}")
                continue
            if pattern in seen:
                self.problem(_line(item), f"pattern {text!r} is listed twice")
                continue
            seen.add(pattern)
            result.append(text)
        return result

    def methods(self, entry: _Entry) -> frozenset[str] | None:
        items = self.strings(entry, _METHOD, "HTTP method")
        if items is None:
            return None
        methods = {m.upper() for m in items}
        if "GET" in methods:
            methods.add("HEAD")  # a GET rule also covers HEAD, as HTTP servers answer HEAD like GET
        return frozenset(methods)

    def fresh(self, entry: _Entry) -> int | None:
        key_node, node = entry
        if not isinstance(node, yaml.ScalarNode):
            self.problem(_line(key_node), 'fresh must be a duration such as "15m"')
            return None
        try:
            # Any scalar: `fresh: 90` then gets parse_duration's message, which shows the expected spelling.
            return parse_duration(str(node.value))
        except ValueError as exc:
            self.problem(_line(key_node), f"fresh: {exc}")
            return None

    def strings(self, entry: _Entry, shape: re.Pattern[str] | None, what: str) -> list[str] | None:
        """A non-empty list of strings, each matching ``shape``; None (after reporting) otherwise."""
        key_node, node = entry
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.problem(_line(key_node), f"{key_node.value} must be a non-empty list")
            return None
        result: list[str] = []
        valid = True
        for item in node.value:
            value = self.string(item, f"each {what}", _line(item))
            if value is not None and shape is not None and not shape.fullmatch(value):
                self.problem(_line(item), f"bad {what} {value!r}")
                value = None
            if value is None:
                valid = False  # keep going: every bad item is reported, not just the first
            else:
                result.append(value)
        return result if valid else None

    def string(self, node: Any, what: str, line: int) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG:
            return str(node.value)
        if not isinstance(node, yaml.ScalarNode):
            detail = ""
        elif node.tag in _PLAIN_TYPES:
            detail = f" (got {node.value!r}, read as {_PLAIN_TYPES[node.tag]}; quote it if you mean text)"
        else:
            detail = f" (unsupported tag {node.tag})"
        self.problem(line, f"{what} must be a string{detail}")
        return None


def _is_null(node: Any) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"
