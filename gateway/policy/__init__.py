"""The policy core: canonical paths, policy files, and the decision. Pure: no framework import.

The names below load on first use: a CLI command that only needs a Principal does not import the
policy loader and YAML.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.policy.engine import decide, decide_tunnelled, winning_rules
    from gateway.policy.loader import PolicyError, load_policy, parse_policy
    from gateway.policy.model import Access, Decision, Outcome, Policy, Principal, Problem, Rule
    from gateway.policy.paths import CanonicalPath, PathError, canonicalize
    from gateway.policy.patterns import PatternError, parse_pattern

__all__ = [
    "Access",
    "CanonicalPath",
    "Decision",
    "Outcome",
    "PathError",
    "PatternError",
    "Policy",
    "PolicyError",
    "Principal",
    "Problem",
    "Rule",
    "canonicalize",
    "decide",
    "decide_tunnelled",
    "load_policy",
    "parse_pattern",
    "parse_policy",
    "winning_rules",
]

_HOME = {
    **dict.fromkeys(("decide", "decide_tunnelled", "winning_rules"), "engine"),
    **dict.fromkeys(("PolicyError", "load_policy", "parse_policy"), "loader"),
    **dict.fromkeys(("Access", "Decision", "Outcome", "Policy", "Principal", "Problem", "Rule"), "model"),
    **dict.fromkeys(("CanonicalPath", "PathError", "canonicalize"), "paths"),
    **dict.fromkeys(("PatternError", "parse_pattern"), "patterns"),
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"gateway.policy.{_HOME[name]}"), name)
