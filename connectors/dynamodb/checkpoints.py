"""The `dynamodb` checkpoint store: positions in a DynamoDB table shared by daemons.

Item key: `namespace` (hash) and `partition` (range); attributes `value` and
`updated_at`. As with the SQLite store (bridge/pipeline/checkpoints.py), saves are staged in
memory and written at `flush_interval_seconds` and on close, so a busy mapping does not
pay a write per batch; a crash loses at most the last interval's progress, which means
redelivery, never a skipped record. Reads are strongly consistent, so a daemon taking
over from another sees what that one flushed. Concurrent writers of one key: the last
write wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

import structlog
from botocore.exceptions import ClientError

from bridge.errors import BridgeError
from bridge.pipeline.checkpoints import StagedPositions
from bridge.retry import Backoff
from connectors.aws.client import announce_endpoint, aws_client, aws_errors, error_code
from connectors.dynamodb.config import DynamoDBCheckpointStoreConfig
from connectors.dynamodb.leases import CONDITION_FAILED, DynamoDBLeaseTable

# BatchWriteItem takes at most 25 requests.
WRITE_BATCH = 25
UNPROCESSED_RETRIES = 8
UNPROCESSED_BACKOFF = Backoff(initial=0.05, maximum=2.0)
TABLE_READY_SECONDS = 60.0
NAMES = {"#ns": "namespace", "#p": "partition", "#v": "value"}


class CheckpointStoreError(BridgeError):
    """The checkpoint table could not be read or written; trying again may help."""

    retriable = True


class PermanentCheckpointStoreError(CheckpointStoreError):
    """The checkpoint table is missing or access is denied."""

    retriable = False


class DynamoDBCheckpointStore(StagedPositions):
    """CheckpointStore backed by one DynamoDB table."""

    def __init__(
        self,
        config: DynamoDBCheckpointStoreConfig,
        fallback_region: str,
        lease_owner: str | None = None,
    ) -> None:
        super().__init__()
        self._lease_owner = lease_owner
        self.config = config
        self.table = config.table
        self._region = config.region_or(fallback_region)
        self._where = f"dynamodb checkpoint table {config.table}"
        self._exit = contextlib.AsyncExitStack()
        self.client: Any = None
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._log = structlog.get_logger("connectors.dynamodb").bind(table=config.table)

    def errors(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return aws_errors(
            self._where,
            doing,
            retriable=CheckpointStoreError,
            permanent=PermanentCheckpointStoreError,
        )

    async def open(self) -> None:
        announce_endpoint(self._log, self.config, "dynamodb", f"table {self.table}", self._region)
        with self.errors("connect"):
            self.client = await self._exit.enter_async_context(
                aws_client(self.config, "dynamodb", self._region)
            )
        if self.config.create_table:
            await self._create_table()
        await self._wait_until_active()
        self._flusher = asyncio.create_task(
            self.flush_periodically(self.config.flush_interval_seconds, self._where),
            name="checkpoint-flusher",
        )

    async def _create_table(self) -> None:
        with self.errors("CreateTable"):
            try:
                await self.client.create_table(
                    TableName=self.table,
                    AttributeDefinitions=[
                        {"AttributeName": "namespace", "AttributeType": "S"},
                        {"AttributeName": "partition", "AttributeType": "S"},
                    ],
                    KeySchema=[
                        {"AttributeName": "namespace", "KeyType": "HASH"},
                        {"AttributeName": "partition", "KeyType": "RANGE"},
                    ],
                    BillingMode="PAY_PER_REQUEST",
                )
            except ClientError as exc:
                if error_code(exc) != "ResourceInUseException":
                    raise
                return
        self._log.info("checkpoints.table_created")

    async def _wait_until_active(self) -> None:
        deadline = time.monotonic() + TABLE_READY_SECONDS
        while True:
            try:
                with self.errors("DescribeTable"):
                    table = (await self.client.describe_table(TableName=self.table))["Table"]
            except PermanentCheckpointStoreError as exc:
                hint = "" if self.config.create_table else " (create_table: true creates it)"
                raise PermanentCheckpointStoreError(f"{exc}{hint}") from exc
            if table.get("TableStatus") == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise CheckpointStoreError(
                    f"{self._where}: not ACTIVE after {TABLE_READY_SECONDS:.0f} s"
                )
            await asyncio.sleep(0.5)

    def lease_table(self, namespace: str) -> DynamoDBLeaseTable | None:
        """Shard leases in the table (the KCL's way): always on with this store, which
        exists to be shared."""
        if self._lease_owner is None:
            return None
        return DynamoDBLeaseTable(self, namespace, self._lease_owner, self.config.lease_ttl_seconds)

    async def query_items(self, namespace: str) -> list[dict[str, Any]]:
        """Every item of the namespace, read consistently."""
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#ns = :ns",
            "ExpressionAttributeNames": {"#ns": "namespace"},
            "ExpressionAttributeValues": {":ns": {"S": namespace}},
            "ConsistentRead": True,
        }
        with self.errors("Query"):
            while True:
                page = await self.client.query(**request)
                items += page.get("Items", ())
                last = page.get("LastEvaluatedKey")
                if not last:
                    return items
                request["ExclusiveStartKey"] = last

    async def load(self, namespace: str) -> dict[str, str]:
        # Under the flush lock: values taken from `_staged` by a flush under way are in
        # neither `_staged` nor (maybe) the query's answer until that flush is done.
        async with self._lock:
            items = await self.query_items(namespace)
            # A lease without a position yet has no `value`.
            stored = {
                item["partition"]["S"]: item["value"]["S"] for item in items if "value" in item
            }
            return self.overlay(namespace, stored)

    async def flush(self) -> None:
        async with self._lock:
            if not (self._staged or self._fenced) or self.client is None:
                return
            staged, fenced = self.take_staged()
            try:
                await self._write(staged)
                refused = await self._write_fenced(fenced)
            except BaseException:
                self.restore_staged(staged, fenced)
                raise
        self.fenced_off(self._where, refused)

    async def _write_fenced(
        self, fenced: dict[tuple[str, str], tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """Each position of a leased partition in one UpdateItem conditional on its writer
        still holding the lease (which a PutItem would also wipe); return those refused.
        Written ones leave `fenced` as they land, so a failure keeps only the rest."""
        refused: list[tuple[str, str]] = []
        now = str(time.time())
        for key in list(fenced):
            (namespace, partition), (owner, value) = key, fenced[key]
            with self.errors("UpdateItem"):
                try:
                    await self.client.update_item(
                        TableName=self.table,
                        Key={"namespace": {"S": namespace}, "partition": {"S": partition}},
                        UpdateExpression="SET #v = :v, updated_at = :now",
                        ConditionExpression="leaseOwner = :me",
                        ExpressionAttributeNames={"#v": "value"},
                        ExpressionAttributeValues={
                            ":v": {"S": value},
                            ":now": {"N": now},
                            ":me": {"S": owner},
                        },
                    )
                except ClientError as exc:
                    if error_code(exc) != CONDITION_FAILED:
                        raise
                    refused.append(key)
            del fenced[key]
        return refused

    async def _write(self, staged: Mapping[tuple[str, str], str | None]) -> None:
        now = str(time.time())
        requests: list[dict[str, Any]] = []
        for (namespace, partition), value in staged.items():
            key = {"namespace": {"S": namespace}, "partition": {"S": partition}}
            if value is None:
                requests.append({"DeleteRequest": {"Key": key}})
            else:
                item = {**key, "value": {"S": value}, "updated_at": {"N": now}}
                requests.append({"PutRequest": {"Item": item}})
        for start in range(0, len(requests), WRITE_BATCH):
            await self._batch_write(requests[start : start + WRITE_BATCH])

    async def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        """One BatchWriteItem, retrying what DynamoDB leaves unprocessed (throttling)."""
        pending = {self.table: requests}
        for attempt in range(1, UNPROCESSED_RETRIES + 1):
            with self.errors("BatchWriteItem"):
                response = await self.client.batch_write_item(RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                return
            await asyncio.sleep(UNPROCESSED_BACKOFF.delay(attempt))
        raise CheckpointStoreError(f"{self._where}: writes stayed unprocessed (throttled)")

    async def clear(self, namespace_prefix: str) -> int:
        await self.flush()
        for key in [key for key in self._staged if key[0].startswith(namespace_prefix)]:
            del self._staged[key]
        keys: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "begins_with(#ns, :prefix)",
            "ProjectionExpression": "#ns, #p",
            "ExpressionAttributeNames": {"#ns": "namespace", "#p": "partition"},
            "ExpressionAttributeValues": {":prefix": {"S": namespace_prefix}},
            "ConsistentRead": True,
        }
        with self.errors("Scan"):
            while True:
                page = await self.client.scan(**request)
                keys += page.get("Items", ())
                last = page.get("LastEvaluatedKey")
                if not last:
                    break
                request["ExclusiveStartKey"] = last
        deletes = [{"DeleteRequest": {"Key": key}} for key in keys]
        for start in range(0, len(deletes), WRITE_BATCH):
            await self._batch_write(deletes[start : start + WRITE_BATCH])
        return len(keys)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        try:
            await self.flush()
        finally:
            self.client = None
            await self._exit.aclose()
