"""Who the user is and whether they may pass: passwords, sessions, the cookie codec, CSRF, throttling,
and the ONE admission path every way in uses (gate.py).

The names below load on first use: importing a light module of the package (accounts, passwords,
sessions, as every CLI command does) must not pull in the admission path and what it imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.auth.gate import DECISION_LABEL, Admission, Gate, Recheck, lost_access
    from gateway.auth.identify import Identifier, Identity

__all__ = ["DECISION_LABEL", "Admission", "Gate", "Identifier", "Identity", "Recheck", "lost_access"]

_HOME = {"DECISION_LABEL": "gate", "Admission": "gate", "Gate": "gate", "Recheck": "gate", "lost_access": "gate",
         "Identifier": "identify", "Identity": "identify"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"gateway.auth.{_HOME[name]}"), name)
