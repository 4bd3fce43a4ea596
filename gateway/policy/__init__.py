"""The policy core: canonical paths, policy files, and the decision. Pure: no framework import."""

from __future__ import annotations

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
