"""Who reads which stream: group membership, rendezvous assignment and stream leases.

A consumer group alone hands the entries of one stream to all its consumers, which
would break per-stream order, so each stream is read by one consumer at a time, the
holder of its lease:

- members: the sorted set `lambda-bridge:<group>:members`, consumer name -> expiry
  (server milliseconds). Every consumer refreshes its own entry and prunes lapsed ones
  in one script that uses the server's clock, so clock skew between hosts is harmless.
- assignment: rendezvous hashing of each stream over the live members; a consumer
  wants the streams it wins. Members that see the same member list agree, and a member
  joining or leaving moves only the streams it wins or won.
- leases: `lambda-bridge:<group>:lease:<stream>` holds the owner's name, taken with
  SET NX PX, renewed and released by scripts that act only if it is still ours. Views
  of the member list may differ for a moment: then two consumers may want one stream,
  and the lease decides.

A lease counts as ours for reading until two thirds of its time-to-live after the
renewal request was sent; renewals run every third, so a read that starts within that
window and blocks for at most a third ends before the lease could lapse on the server.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection, Iterable, Sequence

from redis.asyncio import Redis

# KEYS[1] members; ARGV[1] consumer, ARGV[2] time-to-live (ms). Returns the live members.
_HEARTBEAT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
redis.call('ZADD', KEYS[1], now_ms + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < 3 * ttl then
  redis.call('PEXPIRE', KEYS[1], 3 * ttl)
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# KEYS[1] lease; ARGV[1] consumer, ARGV[2] time-to-live (ms). 1 if renewed.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] lease; ARGV[1] consumer. 1 if it was ours and is gone now.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

READABLE_SHARE = 2 / 3


def members_key(group: str) -> str:
    return f"lambda-bridge:{group}:members"


def lease_key(group: str, stream: str) -> str:
    return f"lambda-bridge:{group}:lease:{stream}"


def _weight(member: str, stream: str) -> bytes:
    return hashlib.sha1(f"{member}\0{stream}".encode()).digest()


def owner_of(stream: str, members: Iterable[str]) -> str:
    """The member that wins `stream` by rendezvous hashing (ties cannot happen in
    practice; the larger name would win)."""
    return max(members, key=lambda member: (_weight(member, stream), member))


class StreamLeases:
    """Membership and the leases of one consumer. Every call is one or two round trips;
    Redis errors propagate to the caller."""

    def __init__(
        self,
        client: Redis,
        *,
        group: str,
        consumer: str,
        streams: Sequence[str],
        ttl_seconds: float,
    ) -> None:
        self.consumer = consumer
        self.streams = list(streams)
        self.ttl_seconds = ttl_seconds
        self._ttl_ms = max(int(ttl_seconds * 1000), 1)
        self._client = client
        self._members_key = members_key(group)
        self._lease_keys = {stream: lease_key(group, stream) for stream in streams}
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        # stream -> monotonic time until which it may be read
        self._readable_until: dict[str, float] = {}
        self.members: list[str] = []

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._readable_until)

    def readable(self, stream: str, now: float) -> bool:
        return self._readable_until.get(stream, 0.0) > now

    def wanted(self, members: Collection[str]) -> set[str]:
        if not members:
            return set(self.streams)
        return {stream for stream in self.streams if owner_of(stream, members) == self.consumer}

    async def rebalance(self) -> tuple[list[str], list[str]]:
        """Refresh membership, renew our leases and take the free ones we want.

        Returns (gained, lost). Lost streams are either no longer wanted (their lease
        is still ours: `release` it once reading has stopped) or held by someone else
        now; either way they are no longer readable.
        """
        sent = time.monotonic()
        held = list(self._readable_until)
        async with self._client.pipeline(transaction=False) as pipe:
            await self._heartbeat(
                keys=[self._members_key], args=[self.consumer, self._ttl_ms], client=pipe
            )
            for stream in held:
                await self._renew(
                    keys=[self._lease_keys[stream]], args=[self.consumer, self._ttl_ms], client=pipe
                )
            replies = await pipe.execute()
        self.members = [member.decode() for member in replies[0]]
        wanted = self.wanted(self.members)
        readable_until = sent + self.ttl_seconds * READABLE_SHARE
        lost = []
        for stream, renewed in zip(held, replies[1:], strict=True):
            if renewed and stream in wanted:
                self._readable_until[stream] = readable_until
            else:
                lost.append(stream)
                # Not readable from now on; a lease still ours is released by the caller.
                self._readable_until.pop(stream)
        # A stream lost just now is taken again next time at the earliest, once the
        # caller has revoked and released it.
        gained = await self._acquire(
            [stream for stream in self.streams if stream in wanted and stream not in lost]
        )
        return gained, lost

    async def _acquire(self, wanted: list[str]) -> list[str]:
        missing = [stream for stream in wanted if stream not in self._readable_until]
        if not missing:
            return []
        sent = time.monotonic()
        async with self._client.pipeline(transaction=False) as pipe:
            for stream in missing:
                pipe.set(self._lease_keys[stream], self.consumer, nx=True, px=self._ttl_ms)
            replies = await pipe.execute()
        gained = [stream for stream, taken in zip(missing, replies, strict=True) if taken]
        for stream in gained:
            self._readable_until[stream] = sent + self.ttl_seconds * READABLE_SHARE
        return gained

    async def release(self, streams: Collection[str]) -> None:
        """Give up these leases if they are still ours."""
        for stream in streams:
            self._readable_until.pop(stream, None)
        if not streams:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for stream in streams:
                await self._release(
                    keys=[self._lease_keys[stream]], args=[self.consumer], client=pipe
                )
            await pipe.execute()

    async def leave(self) -> None:
        """Release every lease and leave the member list, so others take over now
        rather than once our entries lapse."""
        await self.release(list(self._readable_until))
        await self._client.zrem(self._members_key, self.consumer)
