"""`lambda-bridge failures list | show | redrive`: a mapping's failure records, sent again.

A mapping's on-failure destination is read back through its config's `failure_store`
(bridge.failurestores); an SQS mapping without one has its queue's dead-letter queue
(`dead_letter_queue`), whose messages `redrive` moves back to the queue. A failure id is
`<mapping>/<id in its store>`. Exit status: 0 when everything asked for was redriven,
1 when some record failed again, 2 for bad input (one `error:` line).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bridge.cli.failureargs import MAX_MOVE_RATE
from bridge.cli.redrive import Redeliverer
from bridge.cli.redriveledger import FAILED, IN_FLIGHT, REDRIVEN, Entry, Ledger, LedgerBusy
from bridge.codec import dumps_text
from bridge.config.model import LoadedConfig, MappingConfig
from bridge.errors import BridgeError
from bridge.failurestores import (
    DeadLetterQueue,
    FailureStore,
    HasDeadLetterQueue,
    KeepsFailures,
    StoredFailure,
)

EXIT_FAILED_AGAIN = 1
EXIT_INVALID = 2
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class BadInput(Exception):
    """A usage mistake: one line, exit status 2."""


def parse_since(text: str | None, now: dt.datetime | None = None) -> dt.datetime | None:
    if text is None:
        return None
    now = now or dt.datetime.now(dt.UTC)
    found = _DURATION.match(text.strip())
    if found:
        try:
            return now - dt.timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])
        except OverflowError:
            raise BadInput(f"--since {text!r}: that reaches back before the year 1") from None
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(
            f"--since {text!r}: give an ISO time (2026-12-07T06:00:00Z) or a duration "
            "(90s, 15m, 2h, 3d)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def run(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    try:
        if args.action == "show":
            mapping_name, _, _ = args.id.partition("/")
            return asyncio.run(_show(loaded, _mapping(loaded, mapping_name), args.id))
        mapping = _mapping(loaded, args.mapping)
        since = parse_since(args.since)
        if args.action == "list":
            return asyncio.run(_list(loaded, mapping, since))
        return asyncio.run(_redrive(loaded, mapping, since, args))
    except (BadInput, BridgeError, LedgerBusy, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID


def _mapping(loaded: LoadedConfig, name: str) -> MappingConfig:
    for mapping in loaded.config.mappings:
        if mapping.name == name:
            return mapping
    known = ", ".join(sorted(mapping.name for mapping in loaded.config.mappings)) or "none"
    raise BadInput(f"no mapping named {name!r} (known: {known})")


@dataclass
class _Where:
    store: FailureStore | None = None
    queue: DeadLetterQueue | None = None


def _where(loaded: LoadedConfig, mapping: MappingConfig, dlq: str | None = None) -> _Where:
    reference = mapping.on_failure
    context = loaded.build_context
    if reference is not None and dlq is None:
        config = loaded.config.destinations.get(reference) or mapping.source.destination_for(
            reference
        )
        if isinstance(config, KeepsFailures):
            return _Where(store=config.failure_store(reference, mapping, context))
        kind = getattr(config, "type", "?")
        raise BadInput(
            f"mapping {mapping.name!r}: its destination {reference!r} ({kind}) cannot be read "
            "back (it keeps no records, or is not supported): failures works with file, "
            "redis-stream and kafka destinations and SQS dead-letter queues"
        )
    if isinstance(mapping.source, HasDeadLetterQueue):
        return _Where(queue=mapping.source.dead_letter_queue(dlq, context))
    if dlq is not None:
        raise BadInput(f"--dlq: mapping {mapping.name!r} does not read an SQS queue")
    raise BadInput(f"mapping {mapping.name!r} has no on-failure destination")


async def _opened(
    opening: Callable[[], Awaitable[None]],
    body: Callable[[], Awaitable[int]],
    closing: Callable[[], Awaitable[None]],
) -> int:
    await opening()
    try:
        return await body()
    finally:
        await closing()


def _selected(failures: list[StoredFailure], since: dt.datetime | None) -> list[StoredFailure]:
    if since is None:
        return failures
    return [f for f in failures if (f.timestamp or since) >= since]


def _state(entry: Entry | None) -> str:
    if entry is None:
        return "failed"
    if entry.state == REDRIVEN:
        return f"redriven {entry.at}"
    if entry.state == IN_FLIGHT:
        return "in flight when a redrive stopped"
    tries = "once" if entry.attempts == 1 else f"{entry.attempts} times"
    return f"failed again (redriven {tries})"


async def _list(loaded: LoadedConfig, mapping: MappingConfig, since: dt.datetime | None) -> int:
    where = _where(loaded, mapping)
    if where.queue is not None:
        queue = where.queue

        async def count() -> int:
            print(f"{queue.where}: {await queue.depth()} messages (approximate)")
            return 0

        return await _opened(queue.open, count, queue.close)
    store = where.store
    assert store is not None

    async def listing() -> int:
        failures = _selected(await store.failures(), since)
        ledger = Ledger(store.ledger_path).read()
        print(f"{len(failures)} failure records in {store.where}")
        for failure in failures:
            state = _state(ledger.get(failure.id))
            size = failure.batch_size
            records = "?" if size is None else str(size)
            print(
                f"{mapping.name}/{failure.id}  {failure.document.get('timestamp', '?')}  "
                f"{failure.condition}  records={records}  {state}"
            )
        return 0

    return await _opened(store.open, listing, store.close)


async def _show(loaded: LoadedConfig, mapping: MappingConfig, full_id: str) -> int:
    local_id = full_id.partition("/")[2]
    if not local_id:
        raise BadInput(f"{full_id!r}: a failure id is MAPPING/ID, as `failures list` prints it")
    where = _where(loaded, mapping)
    if where.store is None:
        raise BadInput(
            f"mapping {mapping.name!r}: the messages of a dead-letter queue are not listed one "
            "by one; `failures list` counts them and `failures redrive` moves them back"
        )
    store = where.store

    async def showing() -> int:
        found = {failure.id: failure for failure in await store.failures()}
        failure = found.get(local_id)
        if failure is None:
            raise BadInput(f"no failure record {full_id!r} in {store.where}")
        entry = Ledger(store.ledger_path).read().get(local_id)
        print(f"id: {full_id}")
        print(f"in: {store.where}")
        print(f"state: {_state(entry)}")
        print(dumps_text(failure.document, indent=True))
        return 0

    return await _opened(store.open, showing, store.close)


async def _redrive(
    loaded: LoadedConfig,
    mapping: MappingConfig,
    since: dt.datetime | None,
    args: argparse.Namespace,
) -> int:
    where = _where(loaded, mapping, args.dlq)
    if where.queue is not None:
        return await _move(where.queue, args)
    if not args.ids and not args.all:
        raise BadInput("say which records: --ids ID... or --all")
    store = where.store
    assert store is not None

    async def redriving() -> int:
        failures = _selected(await store.failures(), since)
        if args.ids:
            by_id = {failure.id: failure for failure in failures}
            wanted = [i.partition("/")[2] if "/" in i else i for i in args.ids]
            missing = [i for i in wanted if i not in by_id]
            if missing:
                raise BadInput(f"no failure record {missing[0]!r} in {store.where}")
            failures = [by_id[i] for i in dict.fromkeys(wanted)]
        ledger = Ledger(store.ledger_path)
        if args.dry_run:
            return _dry_run(mapping, failures, ledger.read())
        ledger.lock()
        redeliver = Redeliverer(loaded, mapping)
        try:
            return await _redrive_each(mapping, store, failures, ledger, redeliver)
        finally:
            await redeliver.close()
            ledger.close()

    return await _opened(store.open, redriving, store.close)


def _dry_run(mapping: MappingConfig, failures: list[StoredFailure], done: dict[str, Entry]) -> int:
    pending = [f for f in failures if (entry := done.get(f.id)) is None or entry.state != REDRIVEN]
    print(f"dry run: {len(pending)} failure records would be redriven")
    for failure in pending:
        print(f"{mapping.name}/{failure.id}  records={failure.batch_size or '?'}")
    return 0


async def _redrive_each(
    mapping: MappingConfig,
    store: FailureStore,
    failures: list[StoredFailure],
    ledger: Ledger,
    redeliver: Redeliverer,
) -> int:
    done = ledger.read()
    redriven = failed = skipped = 0
    for failure in failures:
        entry = done.get(failure.id)
        if entry is not None and entry.state == REDRIVEN:
            skipped += 1
            continue
        shown = f"{mapping.name}/{failure.id}"
        ledger.write(failure.id, IN_FLIGHT)
        error: str | None = None
        try:
            ok = await store.redrive(failure, redeliver)
        except BridgeError as exc:
            ok, error = False, str(exc)
        ledger.write(failure.id, REDRIVEN if ok else FAILED, error)
        if ok:
            redriven += 1
            print(f"{shown}: redriven", flush=True)
        else:
            failed += 1
            print(f"{shown}: failed again{f' ({error})' if error else ''}", flush=True)
    print(f"{redriven} redriven, {failed} failed again, {skipped} already redriven")
    return EXIT_FAILED_AGAIN if failed else 0


async def _move(queue: DeadLetterQueue, args: argparse.Namespace) -> int:
    if args.ids or args.all:
        raise BadInput("an SQS dead-letter queue is moved as a whole: leave out --ids and --all")
    if not 0 < args.max_per_second <= MAX_MOVE_RATE:
        raise BadInput(f"--max-per-second must be more than 0 and at most {MAX_MOVE_RATE}")
    if args.limit is not None and args.limit < 1:
        raise BadInput("--limit must be 1 or more")

    async def moving() -> int:
        if args.dry_run:
            print(f"dry run: {queue.where} holds {await queue.depth()} messages (approximate)")
            return 0
        progress = await queue.move(
            max_per_second=args.max_per_second,
            limit=args.limit,
            report=lambda line: print(line, flush=True),
        )
        print(f"{progress.moved} messages moved back, {progress.failed} could not be moved")
        return EXIT_FAILED_AGAIN if progress.failed else 0

    return await _opened(queue.open, moving, queue.close)
