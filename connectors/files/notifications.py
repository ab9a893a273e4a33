"""S3 event notifications as Lambda receives them (esm-reference.md 1.10), for
`lambda-bridge generate-event s3`.

The records are built by the `files` source's `s3_record`, so the sample has exactly the
shape that source delivers: form-encoded keys, `size`/`eTag` only on created objects, a
growing upper-case hex `sequencer`.
"""

from __future__ import annotations

import hashlib

from bridge.codec import dumps
from bridge.config.plugins import Identity
from connectors.files.events import FileChange, s3_record, sequencer_text

SAMPLE_BUCKET = "inbox"
SAMPLE_CONFIGURATION = "inbox-notifications"
SAMPLE_TIME_NS = 1_790_000_000_000_000_000


def sample_event(count: int, identity: Identity) -> bytes:
    """`{"Records": [...]}` with `count` notifications; every third one is a removal."""
    records = []
    for index in range(count):
        key = f"reports/2026 report {index}.csv"
        changed_ns = SAMPLE_TIME_NS + index * 1_000_000
        if index % 3 == 2:
            change = FileChange(key=key, changed_ns=changed_ns)
        else:
            change = FileChange(
                key=key,
                size=1024 + index,
                mtime_ns=changed_ns,
                etag=hashlib.md5(key.encode(), usedforsecurity=False).hexdigest(),
                changed_ns=changed_ns,
            )
        records.append(
            s3_record(
                change,
                bucket=SAMPLE_BUCKET,
                region=identity.region,
                configuration_id=SAMPLE_CONFIGURATION,
                sequencer=sequencer_text(changed_ns),
                event_time=changed_ns / 1e9,
            )
        )
    return dumps({"Records": records})
