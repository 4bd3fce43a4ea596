"""Witness paths: a few concrete paths standing for every path a pattern matches.

Questions about a policy ("can this rule ever decide?", "who decides /hr.csv?") are answered by asking
the real matcher about witness paths rather than by reasoning about patterns a second way. A witness
puts a *fresh* name wherever the pattern has a wildcard: a name that no literal of the policy equals
and that no prefix pattern singles out. Every pattern matching a witness then matches every path the
witness stands for, so a pattern that loses on a witness loses on all of them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

from gateway.policy.patterns import STAR, Pattern, is_prefix


def _markers() -> Iterator[str]:
    """Invisible or private-use characters: no operator writes them, and each one folds to itself.

    A clash is still checked for; a literal or prefix can block at most one marker, so one fits.
    """
    yield "\u2063"
    for code in range(0xF0000, 0xFFFFE):
        yield chr(code)


class FreshNames:
    """Segment names that the policy's patterns do not single out, one per (stem, position)."""

    def __init__(self, patterns: Iterable[Pattern], case_insensitive: bool) -> None:
        self._fold = case_insensitive
        self._literals: set[str] = set()
        self._prefixes: dict[int, set[str]] = {}  # folded prefix stems by length
        for pattern in patterns:
            for segment in pattern.key(case_insensitive)[0]:
                if is_prefix(segment):
                    self._prefixes.setdefault(len(segment) - 1, set()).add(segment[:-1])
                elif segment != STAR:
                    self._literals.add(segment)
        self._cache: dict[tuple[str, int, tuple[str, ...]], str] = {}

    def name(self, stem: str, position: int, prefer: tuple[str, ...] = ()) -> str:
        """A name starting with ``stem`` that equals no literal and starts with no prefix longer than
        ``stem`` (shorter ones are prefixes of ``stem`` itself: whatever ``stem*`` matches, they do).

        ``prefer`` lists readable endings to try first; the fallback is invisible but always exists.
        """
        key = (stem, position, prefer)
        found = self._cache.get(key)
        if found is None:
            endings = itertools.chain(prefer, (f"{marker}w{position}" for marker in _markers()))
            found = self._cache[key] = next(stem + e for e in endings if self._fresh(stem, e))
        return found

    def _fresh(self, stem: str, ending: str) -> bool:
        folded_stem = stem.casefold() if self._fold else stem
        name = folded_stem + (ending.casefold() if self._fold else ending)
        if name in self._literals:
            return False
        return not any(
            name[:length] in stems
            for length, stems in self._prefixes.items()
            if len(folded_stem) < length <= len(name)
        )


def pattern_depth(patterns: Iterable[Pattern]) -> int:
    return max((len(p.segments) for p in patterns), default=0)


def witnesses(pattern: Pattern, names: FreshNames, depth: int) -> Iterator[str]:
    """Paths standing for every path ``pattern`` matches, as far as the winning pattern is concerned.

    ``*`` gets a fresh name and ``name*`` the name followed by a fresh ending: swapping a matched
    segment for those can only drop competitors, never add one (the prefixes still matching are the
    ones matching every segment ``name*`` matches). That leaves the tail length below a ``/**``, which
    only matters up to one segment past the deepest pattern (``depth``).
    """
    segments = [_witness_segment(s, i, names) for i, s in enumerate(pattern.segments)]
    if not pattern.globstar:
        yield "/" + "/".join(segments)
        return
    for extra in range(max(depth - len(segments), 0) + 2):
        full = segments + [names.name("", len(segments) + i) for i in range(extra)]
        if full:  # "/**" has no path without a tail: "/" is its trailing-slash form
            yield "/" + "/".join(full)
        yield "/" + "/".join([*full, ""])


def _witness_segment(segment: str, position: int, names: FreshNames) -> str:
    if segment == STAR:
        return names.name("", position)
    if is_prefix(segment):
        return names.name(segment[:-1], position)
    return segment
