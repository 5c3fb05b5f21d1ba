"""Privilege changes: a user's depth on a table changes at once; rows that enter or leave the user's
view are logged for deltas (the user's view log) and for the run's ledger (view changes)."""

from __future__ import annotations

from typing import Any

from simulator.server.state import ServerState
from simulator.server.store import User
from simulator.server.write_log import ViewChange


def change_privilege(state: ServerState, user: User, table: str, changes: dict[str, Any]) -> None:
    """Change a user's privilege on a table; rows entering or leaving its view are logged for deltas."""
    access = state.access
    tables = access.profile_tables(user) or list(state.store.tables)
    before = {t: access.visible_ids(user, state.store.table(t), True) for t in tables}
    version = state.store.next_version()
    user.privilege_log.setdefault(table, []).append((version, user.privilege(table)))
    user.privileges[table] = user.privilege(table).model_copy(update=changes)
    for t in tables:
        after = access.visible_ids(user, state.store.table(t), True)
        flipped = before[t] ^ after
        if flipped:
            user.view_log.setdefault(t, []).extend((version, i) for i in sorted(flipped))
            state.write_log.views.append(ViewChange(version, user.name, t, sorted(before[t] - after),
                                                    sorted(after - before[t])))
