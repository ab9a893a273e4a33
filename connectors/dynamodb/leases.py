"""Shard leases in the `dynamodb` checkpoint store (bridge.protocols.LeaseTable), as the
Kinesis Client Library keeps its lease table: the lease is part of the partition's
checkpoint item, with the attributes `leaseOwner` (absent when free) and `leaseCounter`
(raised by every take, renewal and release). Each change is one UpdateItem with a
ConditionExpression, so of two daemons racing for a lease exactly one wins, and a
checkpoint is written only with the condition `leaseOwner = <writer>` (fenced).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from bridge.protocols import Lease
from connectors.aws.client import error_code

if TYPE_CHECKING:
    from connectors.dynamodb.checkpoints import DynamoDBCheckpointStore

CONDITION_FAILED = "ConditionalCheckFailedException"
LEASE_NAMES = {"#o": "leaseOwner", "#c": "leaseCounter"}


def lease_of(item: Mapping[str, Any]) -> Lease:
    owner = item.get("leaseOwner")
    counter = item.get("leaseCounter")
    value = item.get("value")
    return Lease(
        item["partition"]["S"],
        owner["S"] if owner else None,
        int(counter["N"]) if counter else 0,
        value["S"] if value else None,
    )


class DynamoDBLeaseTable:
    """The leases of one namespace in a DynamoDBCheckpointStore."""

    def __init__(
        self, store: DynamoDBCheckpointStore, namespace: str, owner: str, ttl_seconds: float
    ) -> None:
        self.owner = owner
        self.ttl_seconds = ttl_seconds
        self._store = store
        self._namespace = namespace

    def _key(self, partition: str) -> dict[str, Any]:
        return {"namespace": {"S": self._namespace}, "partition": {"S": partition}}

    async def _update(self, partition: str, **request: Any) -> dict[str, Any] | None:
        """One conditional UpdateItem; None if its condition failed."""
        store = self._store
        with store.errors("UpdateItem"):
            try:
                response: dict[str, Any] = await store.client.update_item(
                    TableName=store.table, Key=self._key(partition), **request
                )
            except ClientError as exc:
                if error_code(exc) == CONDITION_FAILED:
                    return None
                raise
        return response

    async def list_leases(self) -> dict[str, Lease]:
        items = await self._store.query_items(self._namespace)
        leases = {lease.partition: lease for lease in map(lease_of, items)}
        staged = self._store.overlay(self._namespace, {})
        return {
            partition: lease._replace(checkpoint=staged.get(partition, lease.checkpoint))
            if lease.owner == self.owner
            else lease
            for partition, lease in leases.items()
        }

    async def create(self, checkpoints: Mapping[str, str | None]) -> None:
        for partition, value in checkpoints.items():
            # DynamoDB refuses an expression attribute name or value the expressions do
            # not use, so only those of this update are sent.
            names = {"#c": "leaseCounter"}
            values: dict[str, Any] = {":zero": {"N": "0"}}
            update = "SET #c = :zero"
            if value is not None:
                update += ", #v = :v"
                names["#v"] = "value"
                values[":v"] = {"S": value}
            await self._update(
                partition,
                UpdateExpression=update,
                ConditionExpression="attribute_not_exists(#c)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )

    async def take(self, lease: Lease) -> Lease | None:
        condition = "#c = :seen"
        if lease.counter == 0:
            condition = "(attribute_not_exists(#c) OR #c = :seen)"
        response = await self._update(
            lease.partition,
            UpdateExpression="SET #o = :me, #c = :next",
            ConditionExpression=condition,
            ExpressionAttributeNames=LEASE_NAMES,
            ExpressionAttributeValues={
                ":me": {"S": self.owner},
                ":seen": {"N": str(lease.counter)},
                ":next": {"N": str(lease.counter + 1)},
            },
            ReturnValues="ALL_NEW",
        )
        if response is None:
            return None
        return lease_of(response["Attributes"])

    async def _change_own(self, partition: str, update: str) -> bool:
        response = await self._update(
            partition,
            UpdateExpression=update,
            ConditionExpression="#o = :me",
            ExpressionAttributeNames=LEASE_NAMES,
            ExpressionAttributeValues={":me": {"S": self.owner}, ":one": {"N": "1"}},
        )
        return response is not None

    async def renew(self, partitions: Collection[str]) -> set[str]:
        ordered = list(partitions)
        results = await asyncio.gather(
            *(self._change_own(partition, "SET #c = #c + :one") for partition in ordered)
        )
        return {partition for partition, ok in zip(ordered, results, strict=True) if ok}

    async def release(self, partitions: Collection[str]) -> None:
        for partition in partitions:
            await self._change_own(partition, "REMOVE #o SET #c = #c + :one")

    async def checkpoint(self, updates: Mapping[str, str]) -> None:
        self._store.stage_fenced(self._namespace, self.owner, updates)

    def forget(self, partitions: Collection[str]) -> None:
        self._store.drop_fenced(self._namespace, partitions)
