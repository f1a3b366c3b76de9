"""The in-memory store's launches, streamed as the PostgreSQL store's (``store_launch.py``,
migrations/0008): the campaign and a first chunk of whole batches at once, then a chunk per
``continue_launch``, fenced on (writing, node); completion waits for the launch to be
written; a failed launch ends the campaign 'failed' once its written batches are done."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta

from replication.store_api import (
    InvalidInput,
    LaunchCursor,
    LaunchStopped,
    NotFound,
    Recipient,
    StalledLaunch,
)
from replication.store_codec import auto_batch_size
from tests.fakes.memory_base import BatchRow, CampaignRow, MemoryBase, RecipientRow, required_name

MAX_POPULATION = 9_999_999
MAX_BATCH_SIZE = 10_000
MAX_CHUNK = 200_000
Person = tuple[str, str | None, str | None, str | None, str, int | None]  # ..., contact id


class UnknownName(InvalidInput, NotFound):
    """An unknown scenario or group named in a launch: both kinds of refusal."""


class LaunchPart(MemoryBase):
    async def launch_campaign(
        self, scenario: str, launched_by: str, *, group: str | None = None,
        population: int | None = None, batch_size: int | None = None,
    ) -> int:
        cursor = await self.start_launch(scenario, launched_by, node=launched_by, group=group,
                                         population=population, batch_size=batch_size,
                                         first=MAX_CHUNK)
        while not cursor.done:
            cursor = await self.continue_launch(cursor, MAX_CHUNK)
        return cursor.campaign_id

    async def start_launch(
        self, scenario: str, launched_by: str, *, node: str, group: str | None = None,
        population: int | None = None, batch_size: int | None = None, first: int = 1000,
    ) -> LaunchCursor:
        self._enter("start_launch")
        launched_by = required_name("launched_by", launched_by)
        node = required_name("node", node)
        if (group is None) == (population is None):
            raise InvalidInput("group", "give either a group or a population, exactly one")
        if population is not None and (isinstance(population, bool)
                                       or not 1 <= population <= MAX_POPULATION):
            raise InvalidInput("population", f"must be an integer from 1 to {MAX_POPULATION}")
        if batch_size is not None and (isinstance(batch_size, bool)
                                       or not 1 <= batch_size <= MAX_BATCH_SIZE):
            raise InvalidInput("batch_size", f"must be an integer from 1 to {MAX_BATCH_SIZE}")
        if isinstance(first, bool) or not 1 <= first <= MAX_CHUNK:  # before anything is stored
            raise InvalidInput("chunk", f"must be an integer from 1 to {MAX_CHUNK}")
        if scenario not in self._scenarios:
            raise UnknownName("scenario", f"no scenario named {scenario!r}")
        group_id: int | None = None
        if group is not None:
            if group not in self._groups:
                raise UnknownName("group", f"no group named {group!r}")
            if not self._groups[group]:
                raise InvalidInput("group", f"group {group!r} has no contact")
            group_id = list(self._groups).index(group) + 1
            requested = len(self._groups[group])
        else:
            assert population is not None
            requested = population
        if batch_size is None:
            batch_size = auto_batch_size(requested)
        campaign_id = len(self._campaigns) + 1
        self._campaigns[campaign_id] = CampaignRow(
            id=campaign_id, scenario=self._scenarios[scenario], state="running",
            launched_by=launched_by, started_at=self.clock(), recipients={},
            launch_state="writing", requested=requested, launch_node=node,
            launch_heartbeat=self.clock())
        cursor = LaunchCursor(campaign_id, node, requested, 0, batch_size, group_id)
        return self._chunk(cursor, first)

    async def continue_launch(self, cursor: LaunchCursor, chunk: int) -> LaunchCursor:
        self._enter("continue_launch")
        return cursor if cursor.done else self._chunk(cursor, chunk)

    def _people(self, cursor: LaunchCursor, size: int) -> tuple[list[Person], int]:
        if cursor.group_id is None:
            last = min(cursor.requested, cursor.written + size)
            people: list[Person] = []
            for n in range(cursor.written + 1, last + 1):
                number = f"+33639{n:07d}"
                people.append((f"Test {n:06d}", number, number, f"test-{n}@example.invalid",
                               "fr", None))
            return people, 0
        members = list(self._groups.values())[cursor.group_id - 1]
        contacts = sorted((c for c in self._contacts
                           if c.id in members and c.id > cursor.after_contact),
                          key=lambda c: c.id)[:size]
        return ([(c.name, c.phone, c.mobile, c.email, c.language, c.id) for c in contacts],
                contacts[-1].id if contacts else cursor.after_contact)

    def _chunk(self, cursor: LaunchCursor, chunk: int) -> LaunchCursor:
        if isinstance(chunk, bool) or not 1 <= chunk <= MAX_CHUNK:
            raise InvalidInput("chunk", f"must be an integer from 1 to {MAX_CHUNK}")
        campaign = self._campaigns[cursor.campaign_id]
        if campaign.launch_state != "writing" or campaign.launch_node != cursor.node \
                or campaign.state == "cancelled":
            raise LaunchStopped(cursor.campaign_id, "the launch was failed or the campaign "
                                                    "cancelled while it was being written")
        size = max(1, chunk // cursor.batch_size) * cursor.batch_size
        people, after = self._people(cursor, size)
        ids = []
        for name, phone, mobile, email, language, contact_id in people:
            rid = self._next_recipient
            self._next_recipient += 1
            campaign.recipients[rid] = RecipientRow(Recipient(
                id=rid, campaign_id=campaign.id, name=name, phone=phone, mobile=mobile,
                email=email, language=language), contact_id=contact_id)
            ids.append(rid)
        for start in range(0, len(ids), cursor.batch_size):
            batch_id = len(self._batches) + 1
            members = tuple(ids[start:start + cursor.batch_size])
            self._batches[batch_id] = BatchRow(batch_id, campaign.id, members)
            for rid in members:
                campaign.recipients[rid].batch_id = batch_id
        campaign.launch_heartbeat = self.clock()
        done = (cursor.written + len(ids) >= cursor.requested if cursor.group_id is None
                else len(ids) < size)
        if done:
            campaign.launch_state = "written"
            campaign.end_if_done(self._batches.values(), self.clock())
        return dataclasses.replace(cursor, written=cursor.written + len(ids),
                                   after_contact=after, done=done)

    async def fail_launch(self, campaign_id: int, node: str, error: str) -> bool:
        self._enter("fail_launch")
        campaign = self._campaigns.get(campaign_id)
        if campaign is None or campaign.launch_state != "writing" \
                or campaign.launch_node != node:
            return False
        self._fail(campaign, error)
        return True

    def _fail(self, campaign: CampaignRow, error: str) -> None:
        campaign.launch_state = "failed"
        campaign.launch_error = error
        campaign.end_if_done(self._batches.values(), self.clock())

    async def fail_stalled_launches(
        self, live_nodes: Sequence[str], grace_s: float, stale_s: float,
    ) -> list[StalledLaunch]:
        self._enter("fail_stalled_launches")
        if not 0 <= grace_s <= stale_s:
            raise InvalidInput("grace_s", "must be >= 0 and <= stale_s")
        now = self.clock()
        out = []
        for c in self._campaigns.values():
            if c.launch_state != "writing" or c.launch_heartbeat is None:
                continue
            silent = now - c.launch_heartbeat
            if (c.launch_node not in live_nodes and silent > timedelta(seconds=grace_s)) \
                    or silent > timedelta(seconds=stale_s):
                self._fail(c, f"launch writer {c.launch_node} stopped")
                out.append(StalledLaunch(c.id, str(c.launch_node), len(c.recipients),
                                         c.requested))
        return out
