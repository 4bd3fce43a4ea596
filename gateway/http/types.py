"""The ASGI vocabulary every way in speaks, typed once (the ASGI 3 spec's shapes).

Scopes and messages are plain dicts, as servers hand them over; what is typed is who calls whom:
``receive()`` gives the next message, ``send(message)`` takes one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["App", "Message", "Receive", "Scope", "Send"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
