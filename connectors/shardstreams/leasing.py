"""Sharing a stream's shards between daemons through leases in the checkpoint store
(bridge.protocols.LeaseTable), as the Kinesis Client Library does.

Every `ttl/3` seconds (and at once when a shard of ours finishes) one cycle:

1. renew the leases we hold; one that cannot be renewed is lost: its shard is revoked
   (its queued records dropped, nothing of it committed any more) before anything else;
2. list every lease, and create those of newly listed shards;
3. a lease is free when it has no owner, when our own previous run left it (a kill -9:
   the owner's name before `#` is ours), or when its counter has not moved for `ttl`
   seconds by our own clock (its holder stopped renewing; no clock needs to agree);
4. a shard may be taken only once each parent it came from is finished (`SHARD_END`)
   or gone from the stream, so lineage holds across daemons;
5. take free leases up to our fair share, ceil(eligible shards / live owners); below
   it with nothing free, steal one lease from the owner holding the most (at most one
   steal per `ttl`).

A held lease is readable until two thirds of `ttl` after its last successful renewal
was sent, so a daemon that cannot renew stops reading before anyone may take over. A
stolen lease is read only `ttl` after the steal: its former holder stops reading at its
next renewal (or when its lease stops being readable), so two daemons never read one
shard at once. What the former holder had in flight is fenced: its checkpoints are
refused once it no longer holds the lease, so the new owner starts from the last
position committed while the lease was held, and only the batch in flight then can be
delivered twice (at-least-once, never lost).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from bridge.errors import BridgeError, PermanentSourceError
from bridge.protocols import Lease, LeaseTable, Ownership
from connectors.shardstreams.lineage import SHARD_END, Phase, ShardInfo

if TYPE_CHECKING:
    from connectors.shardstreams.shards import ShardedStreamSource

RENEWALS_PER_TTL = 3
READABLE_SHARE = 2 / 3
RELEASE_TIMEOUT_SECONDS = 5.0


class LeasedShards:
    """The shards of one source that this daemon holds leases on."""

    def __init__(self, source: ShardedStreamSource, table: LeaseTable, ownership: Ownership):
        self.table = table
        self.ttl = table.ttl_seconds
        self._source = source
        self._ownership = ownership
        self._stable_name = table.owner.partition("#")[0]
        self._listed: dict[str, ShardInfo] = {}
        self._readable_until: dict[str, float] = {}
        # partition -> (counter, monotonic time it was first seen with that counter)
        self._seen: dict[str, tuple[int, float]] = {}
        self._next_steal = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._log = source._log

    @property
    def held(self) -> list[str]:
        return sorted(self._readable_until)

    def readable(self, shard_id: str, now: float) -> bool:
        return self._readable_until.get(shard_id, 0.0) > now

    def listed(self, shards: Sequence[ShardInfo]) -> None:
        self._listed = {info.shard_id: info for info in shards}

    async def start(self, shards: Sequence[ShardInfo], initial: Mapping[str, str | None]) -> None:
        """Create the leases of the listed shards, take our share at once, then keep
        them in the background."""
        self.listed(shards)
        await self.table.create(initial)
        await self.cycle()
        self._task = self._ownership.spawn(self._run(), "shard-leases")

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.ttl / RENEWALS_PER_TTL):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.cycle()
            except Exception as exc:  # the store's own errors (SQLite, DynamoDB)
                if isinstance(exc, BridgeError) and not exc.retriable:
                    raise
                reason = str(exc) or type(exc).__name__
                self._failing = True
                self._ownership.failed("shard leases", reason)
                self._log.warning("leases.renew_failed", error=reason)
                self._drop([s for s in self.held if not self.readable(s, time.monotonic())])
                continue
            if self._failing:
                self._failing = False
                self._ownership.recovered("shard leases")

    async def cycle(self) -> None:
        sent = time.monotonic()
        held = self.held
        renewed = await self.table.renew(held)
        for shard_id in renewed:
            self._readable_until[shard_id] = sent + self.ttl * READABLE_SHARE
        lost = [shard_id for shard_id in held if shard_id not in renewed]
        self._drop(lost)
        await self._release_finished()
        leases = await self.table.list_leases()
        missing = {shard_id: None for shard_id in self._listed if shard_id not in leases}
        if missing:
            await self.table.create(missing)
            leases = await self.table.list_leases()
        gained = await self._take(leases, time.monotonic())
        if lost or gained:
            self._log.info("leases.changed", held=self.held, taken=gained, lost=lost)
        self._ownership.leases_changed(self.held, len(gained), 0)

    def _free(self, lease: Lease, now: float) -> bool:
        if lease.owner is None:
            return True
        if lease.owner == self.table.owner:
            return lease.partition not in self._readable_until
        if lease.owner.partition("#")[0] == self._stable_name:
            return True
        return now - self._seen[lease.partition][1] >= self.ttl

    def _eligible(self, lease: Lease, leases: Mapping[str, Lease]) -> bool:
        info = self._listed.get(lease.partition)
        if info is None or lease.checkpoint == SHARD_END:
            return False
        for parent in info.parents:
            found = leases.get(parent)
            if parent in self._listed and (found is None or found.checkpoint != SHARD_END):
                return False
        return True

    async def _take(self, leases: Mapping[str, Lease], now: float) -> list[str]:
        for partition, lease in leases.items():
            seen = self._seen.get(partition)
            if seen is None or seen[0] != lease.counter:
                self._seen[partition] = (lease.counter, now)
        eligible = [lease for lease in leases.values() if self._eligible(lease, leases)]
        free = [lease for lease in eligible if self._free(lease, now)]
        others = Counter(
            lease.owner
            for lease in eligible
            if lease.owner not in (None, self.table.owner) and not self._free(lease, now)
        )
        target = math.ceil(len(eligible) / (len(others) + 1))
        mine = sum(1 for lease in eligible if lease.partition in self._readable_until)
        gained: list[str] = []
        for lease in sorted(free, key=lambda lease: lease.partition):
            if mine + len(gained) >= target:
                break
            if await self._gain(lease, now):
                gained.append(lease.partition)
        if gained or mine >= target or now < self._next_steal or not others:
            return gained
        victim, count = others.most_common(1)[0]
        if count > target or (count == target and mine < target - 1):
            self._next_steal = now + self.ttl
            stolen = max(
                (lease for lease in eligible if lease.owner == victim),
                key=lambda lease: lease.partition,
            )
            # Its holder may read it until its lease stops being readable for it.
            if await self._gain(stolen, now + self.ttl):
                self._log.info("leases.stolen", shard=stolen.partition, owner=victim)
                gained.append(stolen.partition)
        return gained

    async def _gain(self, lease: Lease, read_from: float) -> bool:
        sent = time.monotonic()
        taken = await self.table.take(lease)
        if taken is None:
            return False
        self._readable_until[lease.partition] = sent + self.ttl * READABLE_SHARE
        source = self._source
        info = self._listed[lease.partition]
        try:
            source._lineage.add(info, taken.checkpoint, False, source._tip_marker(time.time()))
        except ValueError as exc:
            raise PermanentSourceError(source.reset_advice(str(exc))) from None
        source._shards[info.shard_id].next_poll = read_from
        source._paused.discard(info.shard_id)
        source._start_ready()
        return True

    def _drop(self, lost: list[str]) -> None:
        """Stop reading shards whose lease is gone, or can no longer be renewed in time:
        the mapping drops their queued records and commits nothing more of them; their
        staged positions are dropped too. /status and /metrics count them lost at once,
        also when the cycle goes no further (the store failing)."""
        if not lost:
            return
        self._ownership.revoked(lost)
        for shard_id in lost:
            self._readable_until.pop(shard_id, None)
            self._source._shards.pop(shard_id, None)
            self._source._paused.discard(shard_id)
        self.table.forget(lost)
        self._ownership.leases_changed(self.held, 0, len(lost))
        self._log.warning("leases.lost", shards=sorted(lost))

    async def _release_finished(self) -> None:
        """Shards of ours that are finished: once their SHARD_END is written (fenced),
        let their leases go, so their children can be taken (by us at once)."""
        shards = self._source._shards
        done = [
            shard_id
            for shard_id in self._readable_until
            if shard_id in shards and shards[shard_id].phase is Phase.FINISHED
        ]
        if not done:
            return
        await self._source._store.flush()
        await self.table.release(done)
        for shard_id in done:
            self._readable_until.pop(shard_id)
        self._log.info("leases.finished", shards=sorted(done))

    async def close(self) -> None:
        """Stop renewing; write what was settled; hand the leases back so others take
        over now rather than after `ttl`."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        held, self._readable_until = self.held, {}
        if not held:
            return
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT_SECONDS):
                await self._source._store.flush()
                await self.table.release(held)
        except (BridgeError, TimeoutError) as exc:
            self._log.warning("leases.release_failed", error=str(exc) or type(exc).__name__)
