"""Who the user is and whether they may pass: passwords, sessions, the cookie codec, CSRF, throttling,
and the ONE admission path every way in uses (gate.py)."""

from gateway.auth.gate import DECISION_LABEL, Admission, Gate, Recheck, lost_access
from gateway.auth.identify import Identifier, Identity

__all__ = ["DECISION_LABEL", "Admission", "Gate", "Identifier", "Identity", "Recheck", "lost_access"]
