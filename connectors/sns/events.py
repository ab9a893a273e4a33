"""SNS notifications as Lambda receives them (esm-reference.md 1.10), for
`lambda-bridge generate-event sns`.

SNS pushes to Lambda asynchronously, one record per event; the sample puts `count`
records in one `Records` list so a handler's loop can be exercised. Note the casing
`SigningCertUrl` / `UnsubscribeUrl` of the Lambda shape (SNS-to-SQS envelopes write
`...URL`).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

from bridge.codec import dumps
from bridge.config.plugins import Identity
from bridge.failures import iso_millis

SAMPLE_TOPIC = "orders"
SAMPLE_TIME = 1_790_000_000.0
# Fixed, so the sample is the same on every run.
SAMPLE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "lambda-bridge:sample:sns")


def sns_record(
    *,
    topic_arn: str,
    subscription_id: str,
    message_id: str,
    message: str,
    timestamp: float,
    subject: str | None = None,
    attributes: dict[str, tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """One `Records[]` entry; `attributes` maps a name to its (Type, Value)."""
    region = topic_arn.split(":")[3]
    host = f"https://sns.{region}.amazonaws.com"
    subscription_arn = f"{topic_arn}:{subscription_id}"
    # Not a real signature (there is no key to sign with); shaped like one.
    signature = base64.b64encode(hashlib.sha256(message.encode()).digest() * 8).decode()
    return {
        "EventVersion": "1.0",
        "EventSubscriptionArn": subscription_arn,
        "EventSource": "aws:sns",
        "Sns": {
            "SignatureVersion": "1",
            "Timestamp": iso_millis(timestamp),
            "Signature": signature,
            "SigningCertUrl": f"{host}/SimpleNotificationService-0000000000000000000000.pem",
            "MessageId": message_id,
            "Message": message,
            "MessageAttributes": {
                name: {"Type": kind, "Value": value}
                for name, (kind, value) in (attributes or {}).items()
            },
            "Type": "Notification",
            "UnsubscribeUrl": f"{host}/?Action=Unsubscribe&SubscriptionArn={subscription_arn}",
            "TopicArn": topic_arn,
            "Subject": subject,
        },
    }


def sample_event(count: int, identity: Identity) -> bytes:
    """`{"Records": [...]}` with `count` notifications of a topic in `identity`'s account."""
    topic_arn = f"arn:aws:sns:{identity.region}:{identity.account_id}:{SAMPLE_TOPIC}"
    subscription_id = str(uuid.uuid5(SAMPLE_NAMESPACE, "subscription"))
    records = [
        sns_record(
            topic_arn=topic_arn,
            subscription_id=subscription_id,
            message_id=str(uuid.uuid5(SAMPLE_NAMESPACE, f"message-{index}")),
            message=dumps({"order_id": 1000 + index, "status": "created"}).decode(),
            timestamp=SAMPLE_TIME + index,
            subject="Order created" if index % 2 == 0 else None,
            attributes={"source": ("String", "web"), "priority": ("Number", str(index % 3))},
        )
        for index in range(count)
    ]
    return dumps({"Records": records})
