"""Filtering: records/s through a compiled set of five filters on typical SQS records.

The records are built by the real `sqs` source's record builder from ReceiveMessage-
shaped messages (a JSON body of a few fields, the usual attributes, message attributes
on half of them), so each carries its JSON as the pipeline does. The filter set is the
one a mapping compiles: five OR-ed patterns on the body (exact, numeric range, prefix,
anything-but, exists) and on metadata, about half of the records matching one.

It prints, on one core:
- baseline: what a matching engine cannot avoid, decoding each record's JSON body with
  orjson (the SQS source hands records over as dicts, so the record itself is not
  decoded again);
- filtered: the mapping's FilterSet.matches on fresh records (decoding included);
- the ratio of the two rates, and the absolute rate against the target of 200,000/s.

    python tests/bench/filter_throughput.py [--records N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bridge.codec import loads
from bridge.filtering.criteria import SQS_BODY, build_filter_set
from bridge.records import Record
from connectors.sqs.events import MessageRecords, sample_message

PATTERNS = [
    '{"body": {"status": ["paid", "refunded"], "currency": ["EUR"]}}',
    '{"body": {"amount": [{"numeric": [">=", 500, "<", 1000]}]}}',
    '{"body": {"customer": {"tier": [{"prefix": "gold"}]}}}',
    '{"body": {"channel": [{"anything-but": ["web", "app", "pos"]}]}}',
    '{"body": {"coupon": [{"exists": true}]}, "attributes": {"ApproximateReceiveCount": ["1"]}}',
]


def messages(count: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    found = []
    for index in range(count):
        message = sample_message(index)
        body: dict[str, Any] = {
            "order_id": 1000 + index,
            "status": rng.choice(["created", "paid", "shipped", "refunded"]),
            "currency": rng.choice(["EUR", "USD"]),
            "amount": rng.randint(1, 1200),
            "customer": {
                "id": f"c-{index % 97}",
                "tier": rng.choice(["gold-plus", "silver", "bronze"]),
            },
            "channel": rng.choice(["web", "app", "pos", "phone"]),
        }
        if rng.random() < 0.1:
            body["coupon"] = "SPRING"
        message["Body"] = json.dumps(body)
        found.append(message)
    return found


def fresh_records(builder: MessageRecords, raw: list[dict[str, Any]]) -> list[Record]:
    return [builder.record(message) for message in raw]


def baseline(records: list[Record]) -> float:
    started = time.perf_counter()
    for record in records:
        loads(record.payload["body"])
    return time.perf_counter() - started


def filtered(records: list[Record], matches: Any) -> tuple[float, int]:
    started = time.perf_counter()
    kept = sum(1 for record in records if matches(record))
    return time.perf_counter() - started, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    raw = messages(args.records)
    builder = MessageRecords("arn:aws:sqs:us-east-1:000000000000:orders", fifo=False)
    filters = build_filter_set(PATTERNS, SQS_BODY)
    base_times, filter_times = [], []
    kept = 0
    for _ in range(args.rounds):
        base_times.append(baseline(fresh_records(builder, raw)))
        elapsed, kept = filtered(fresh_records(builder, raw), filters.matches)
        filter_times.append(elapsed)
    base_rate = args.records / statistics.median(base_times)
    filter_rate = args.records / statistics.median(filter_times)
    print(
        f"records: {args.records:,} SQS records, 5 filters, median of {args.rounds} rounds, one core"
    )
    print(f"kept by the filters: {kept:,} ({kept / args.records:.0%})")
    print(f"baseline, decode the body JSON only:         {base_rate:,.0f} records/s")
    print(f"lambda-bridge FilterSet.matches:             {filter_rate:,.0f} records/s")
    print(f"ratio filtered / baseline: {filter_rate / base_rate:.2f}")
    print(f"target >= 200,000 records/s: {'met' if filter_rate >= 200_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
