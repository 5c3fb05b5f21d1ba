"""Who sees and may change which rows: privileges (all reads) and offline profiles (device reads).

Privilege depth per table: none, user (rows the user owns), team (rows of the user's team), org
(every row). A device session (header x-syncsim-device-id) additionally sees only its user class's
offline-profile rows. `modified_within_days` is anchored at the server's start time, so rows do not
age out during a run (docs/protocol.md).
"""

from __future__ import annotations

from collections import OrderedDict

from simulator.protocol.odata import row_digest
from simulator.scenario import Depth, ProfileTable, Scenario
from simulator.server.store import Row, Store, TableStore, User, lookup_key

_CACHE_SIZE = 512


class Access:
    """Visibility and write checks, with a small cache of sorted visible-id lists for paging."""

    def __init__(self, store: Store, scenario: Scenario, anchor: float) -> None:
        self.store = store
        self.anchor = anchor
        self.profiles: dict[str, dict[str, ProfileTable]] = {
            c.name: {p.table: p for p in c.profile} for c in scenario.user_classes
        }
        self._sorted: OrderedDict[tuple[object, ...], list[Row]] = OrderedDict()

    def profile(self, user: User, table: str) -> ProfileTable | None:
        return self.profiles.get(user.user_class, {}).get(table)

    def profile_tables(self, user: User) -> list[str]:
        return list(self.profiles.get(user.user_class, {}))

    # --- single-row checks ------------------------------------------------------------------
    @staticmethod
    def depth_allows(depth: Depth, user: User, row: Row) -> bool:
        if depth == "org":
            return True
        if depth == "team":
            return row.team == user.team
        if depth == "user":
            return row.owner == user.index
        return False

    def can_read(self, user: User, table: TableStore, row: Row, at_version: int | None = None) -> bool:
        return self.depth_allows(user.privilege(table.meta.logical_name, at_version).read, user, row)

    def row_visible(self, user: User, table: TableStore, row: Row, device: bool, parents: dict[str, set[str]],
                    at_version: int | None = None) -> bool:
        """Whether a row is in the user's view (with privileges as at `at_version`, default now).

        `parents` caches related tables' visible ids.
        """
        if not self.can_read(user, table, row, at_version):
            return False
        if not device:
            return True
        pt = self.profile(user, table.meta.logical_name)
        if pt is None:
            return False
        if pt.filter == "owner":
            return row.owner == user.index
        if pt.filter == "team":
            return row.team == user.team
        if pt.filter == "modified_within_days":
            return row.modified >= self.anchor - (pt.days or 0) * 86400
        if pt.filter == "related":
            assert pt.related_table and pt.via
            if pt.related_table not in parents:
                parents[pt.related_table] = self.visible_ids(user, self.store.table(pt.related_table), True)
            return row.values.get(lookup_key(pt.via)) in parents[pt.related_table]
        return True

    def can_write(self, user: User, table: TableStore, row: Row | None, op: str) -> bool:
        """op: create, update or delete. Create checks the table privilege only."""
        priv = user.privilege(table.meta.logical_name)
        if op == "create":
            return priv.create and priv.write != "none"
        depth = priv.delete if op == "delete" else priv.write
        return row is not None and self.depth_allows(depth, user, row)

    # --- sets -------------------------------------------------------------------------------
    def _privileged_ids(self, user: User, table: TableStore) -> set[str] | None:
        """Ids the read privilege allows; None means every row (org depth)."""
        depth = user.privilege(table.meta.logical_name).read
        if depth == "org":
            return None
        if depth == "team":
            return table.by_team.get(user.team, set())
        if depth == "user":
            return table.by_owner.get(user.index, set())
        return set()

    def visible_ids(self, user: User, table: TableStore, device: bool) -> set[str]:
        """Every id the user sees in a table (device: within its offline profile)."""
        allowed = self._privileged_ids(user, table)
        if not device:
            return set(table.rows) if allowed is None else set(allowed)
        pt = self.profile(user, table.meta.logical_name)
        if pt is None:
            return set()
        if pt.filter == "owner":
            base: set[str] = table.by_owner.get(user.index, set())
        elif pt.filter == "team":
            base = table.by_team.get(user.team, set())
        elif pt.filter == "related":
            assert pt.related_table and pt.via
            parents = self.visible_ids(user, self.store.table(pt.related_table), True)
            index = table.children[pt.via]
            base = set().union(*(index.get(p, ()) for p in parents)) if parents else set()
        elif pt.filter == "modified_within_days":
            cutoff = self.anchor - (pt.days or 0) * 86400
            source = table.rows.values() if allowed is None else (table.rows[i] for i in allowed)
            return {r.id for r in source if r.modified >= cutoff}
        else:
            base = set(table.rows) if allowed is None else allowed
        return set(base) if allowed is None else base & allowed

    def view_key(self, user: User, table: TableStore, device: bool) -> tuple[object, ...]:
        """What decides the user's view of a table: users with equal keys see exactly the same rows."""
        depth = user.privilege(table.meta.logical_name).read
        scope: tuple[object, ...] = {"org": ("org",), "team": ("team", user.team), "user": ("user", user.index)}.get(
            depth, ("none",))
        if not device:
            return (table.meta.logical_name, *scope)
        pt = self.profile(user, table.meta.logical_name)
        if pt is None:
            return (table.meta.logical_name, "outside profile")
        detail: tuple[object, ...] = {
            "all": (), "owner": (user.index,), "team": (user.team,),
            "modified_within_days": (pt.days,), "related": (user.index,),
        }[pt.filter]
        return (table.meta.logical_name, *scope, "profile", pt.filter, *detail)

    def shared_view(self, user: User, table: TableStore, device: bool) -> bool:
        """Whether other users can have the same view (it is not defined by this one user)."""
        if user.privilege(table.meta.logical_name).read == "user":
            return False
        pt = self.profile(user, table.meta.logical_name) if device else None
        return pt is None or pt.filter not in ("owner", "related")

    def sorted_visible(self, user: User, table: TableStore, device: bool, version: int) -> list[Row]:
        """The visible rows sorted by id, as of `version`, shared by users with the same view_key.

        A cached list is a snapshot: rows written after `version` appear in it as they were, which
        is what a change-tracked read started at `version` promises (the delta brings the rest).
        """
        key = (*self.view_key(user, table, device), version)
        hit = self._sorted.get(key)
        if hit is not None:
            self._sorted.move_to_end(key)
            return hit
        rows = table.rows
        ordered = [rows[i] for i in sorted(self.visible_ids(user, table, device))]
        self._sorted[key] = ordered
        if len(self._sorted) > _CACHE_SIZE:
            self._sorted.popitem(last=False)
        return ordered

    def snapshot(self, user: User) -> dict[str, dict[str, int]]:
        """For each profile table, {row id: version} the user's device should hold."""
        out: dict[str, dict[str, int]] = {}
        for name in self.profile_tables(user):
            table = self.store.table(name)
            out[name] = {i: table.rows[i].version for i in self.visible_ids(user, table, True)}
        return out

    def contents(self, user: User, snapshot: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        """For each table of a `snapshot`, {row id: row_digest of the row as a device read serves it}."""
        out: dict[str, dict[str, int]] = {}
        for name, rows in snapshot.items():
            table = self.store.table(name)
            out[name] = {i: row_digest(table.rows[i].encoded(table)) for i in rows}
        return out
