"""`gateway store copy`: the users (password hashes as they are) and the audit trail, from one user
store to another (the embedded SQLite file to PostgreSQL, or back), for the move from one machine
to many.

Sessions are not copied: they belong to the session store, and users sign in again after the move.
The target must be empty (no user, no audit record): a copy never merges into or overwrites live
state. Users keep their ids, so the audit trail and any session store still name the same people.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.store.base import StoreError, UserBackend

__all__ = ["Copied", "TargetNotEmpty", "copy_users_and_audit"]

PAGE = 1000  # audit records per read and per write


class TargetNotEmpty(StoreError):
    """The target already holds users or audit records."""


@dataclass(frozen=True, slots=True)
class Copied:
    users: int
    audit: int


async def copy_users_and_audit(source: UserBackend, target: UserBackend) -> Copied:
    """Copy everything; raises TargetNotEmpty (nothing written) or StoreError."""
    if await target.list_users() or await target.export_audit(offset=0, limit=1):
        raise TargetNotEmpty("the target already holds users or audit records: copy only into an empty store")
    users = await source.list_users()
    await target.import_users(users)
    copied = 0
    while page := await source.export_audit(offset=copied, limit=PAGE):
        await target.add_audit(page)
        copied += len(page)
    return Copied(users=len(users), audit=copied)
