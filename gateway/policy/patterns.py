"""Policy path patterns: parsing, specificity and the compiled matcher.

A pattern is a list of segments, each a literal, a prefix ``name*`` (one whole segment starting with
``name``) or ``*`` (one whole non-empty segment), optionally ended by ``/**`` (the path itself and
everything below it). The most specific matching pattern wins; specificity compares segment ranks from
the left: literal > prefix (the longer the more specific) > ``*`` > pattern ended here > ``**``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.policy.model import Rule

STAR = "*"
GLOBSTAR = "**"

RANK_LITERAL = 4
RANK_PREFIX = 3
RANK_STAR = 2
RANK_END = 1
RANK_GLOBSTAR = 0

# One segment's rank: (RANK_*, length of a prefix's literal part, else 0).
Rank = tuple[int, int]

_FORBIDDEN = re.compile(r"[%\\;?#]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class PatternError(ValueError):
    """A pattern as written in a policy file is invalid; the message says why."""


def is_prefix(segment: str) -> bool:
    """True for a parsed prefix segment (``hr*``): parse_pattern keeps ``*`` out of literals."""
    return len(segment) > 1 and segment[-1] == STAR


def segment_matches(segment: str, name: str) -> bool:
    """Whether one pattern segment matches one path segment (both folded alike)."""
    if segment == STAR:
        return name != ""
    if is_prefix(segment):
        return name.startswith(segment[:-1])
    return segment == name


@dataclass(frozen=True, slots=True)
class Pattern:
    segments: tuple[str, ...]  # literals, prefixes ("hr*") or STAR; "" only as a final segment
    globstar: bool  # ends with "/**"

    def key(self, case_insensitive: bool) -> tuple[tuple[str, ...], bool]:
        """Identity for conflict detection: patterns with equal keys match exactly the same paths."""
        if not case_insensitive:
            return self.segments, self.globstar
        return tuple(s.casefold() for s in self.segments), self.globstar

    def specificity(self, case_insensitive: bool = False) -> tuple[Rank, ...]:
        """Sort key: of two patterns matching one path, the greater decides it."""
        # Prefix lengths are compared folded: "ß*" matches what "ss*" matches, so it ranks like it.
        ranks = [_rank(s) for s in self.key(case_insensitive)[0]]
        ranks.append((RANK_GLOBSTAR if self.globstar else RANK_END, 0))
        return tuple(ranks)

    def matches(self, path: str, *, case_insensitive: bool = False) -> bool:
        """Straightforward (slow) match, the reference the trie is tested against."""
        segments = _split(path, case_insensitive)
        own = self.key(case_insensitive)[0]
        if len(segments) < len(own) or (len(segments) > len(own) and not self.globstar):
            return False
        return all(segment_matches(p, s) for p, s in zip(own, segments, strict=False))


def _rank(segment: str) -> Rank:
    if segment == STAR:
        return RANK_STAR, 0
    if is_prefix(segment):
        return RANK_PREFIX, len(segment) - 1
    return RANK_LITERAL, 0


def parse_pattern(text: str) -> Pattern:
    """Parse a pattern as written in a policy file, or raise PatternError."""
    if not text.startswith("/"):
        raise PatternError("a pattern must start with /")
    bad = _FORBIDDEN.search(text)
    if bad is not None:
        if bad.group() == "%":
            raise PatternError("% is not allowed: patterns are written decoded")
        raise PatternError(f"{bad.group()!r} is not allowed in a pattern")
    if _CONTROL.search(text):
        raise PatternError("control character in pattern")
    parts = text[1:].split("/")
    globstar = parts[-1] == GLOBSTAR
    if globstar:
        parts.pop()
    for index, part in enumerate(parts):
        if part == "":
            # "/" and "/admin/" are literals ending in a slash; any other empty segment is a "//".
            if index != len(parts) - 1 or globstar:
                raise PatternError("empty segment (//) in pattern")
        elif part == GLOBSTAR:
            raise PatternError("** is only allowed as the last segment (/**)")
        elif part in (".", ".."):
            raise PatternError("dot segments are not allowed in a pattern")
        elif STAR in part[:-1]:
            # Only a trailing * has a meaning; "*.js" or "a*b" would need a glob engine and a ranking
            # nobody can predict, so they stay errors rather than literals with a surprising "*".
            raise PatternError("* must be a whole segment (*) or end one (name*)")
    return Pattern(segments=tuple(parts), globstar=globstar)


def _split(path: str, case_insensitive: bool) -> list[str]:
    # The canonical path has no empty segment except a final one, mirroring the pattern's trailing "/".
    if case_insensitive:
        path = path.casefold()
    return path[1:].split("/")


class _Node:
    __slots__ = ("end", "globstar", "literals", "prefix_lengths", "prefixes", "star")

    def __init__(self) -> None:
        self.literals: dict[str, _Node] = {}
        self.prefixes: dict[str, _Node] = {}  # keyed by the characters before the "*"
        self.prefix_lengths: tuple[int, ...] = ()  # distinct keys' lengths, longest (most specific) first
        self.star: _Node | None = None
        self.end: tuple[Rule, ...] = ()  # rules whose pattern ends exactly here
        self.globstar: tuple[Rule, ...] = ()  # rules whose pattern ends here with "/**"

    def prefix_child(self, stem: str) -> _Node:
        child = self.prefixes.get(stem)
        if child is None:
            child = self.prefixes[stem] = _Node()
            if len(stem) not in self.prefix_lengths:
                self.prefix_lengths = tuple(sorted((*self.prefix_lengths, len(stem)), reverse=True))
        return child


class Matcher:
    """A trie over pattern segments, built once; ``lookup`` returns the rules of the winning pattern."""

    __slots__ = ("_case_insensitive", "_root")

    def __init__(self, rules: Iterable[Rule], *, case_insensitive: bool = False) -> None:
        self._case_insensitive = case_insensitive
        self._root = _Node()
        for rule in rules:
            pattern = parse_pattern(rule.pattern)
            node = self._root
            for segment in pattern.key(case_insensitive)[0]:
                if segment == STAR:
                    if node.star is None:
                        node.star = _Node()
                    node = node.star
                elif is_prefix(segment):
                    node = node.prefix_child(segment[:-1])
                else:
                    node = node.literals.setdefault(segment, _Node())
            if pattern.globstar:
                node.globstar = (*node.globstar, rule)
            else:
                node.end = (*node.end, rule)

    def lookup(self, path: str) -> tuple[Rule, ...]:
        """Rules sharing the most specific pattern matching ``path`` (a canonical decision path)."""
        segments = _split(path, self._case_insensitive)
        return _search(self._root, segments, 0, len(segments))


def _search(node: _Node, segments: list[str], depth: int, count: int) -> tuple[Rule, ...]:
    # Children are tried in rank order (literal, prefixes longest first, star, ended, globstar), so the
    # first complete match is the most specific one and nothing less specific is ever looked at.
    if depth < count:
        segment = segments[depth]
        child = node.literals.get(segment)
        if child is not None:
            found = _search(child, segments, depth + 1, count)
            if found:
                return found
        if node.prefix_lengths:
            # One dict probe per distinct prefix length, not one test per prefix: a node with
            # thousands of prefixes costs what one with a handful does.
            size = len(segment)
            for length in node.prefix_lengths:
                if length <= size:
                    child = node.prefixes.get(segment[:length])
                    if child is not None:
                        found = _search(child, segments, depth + 1, count)
                        if found:
                            return found
        if node.star is not None and segment:
            found = _search(node.star, segments, depth + 1, count)
            if found:
                return found
    elif node.end:
        return node.end
    return node.globstar
