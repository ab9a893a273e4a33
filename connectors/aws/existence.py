"""Whether the queue or stream a new event source mapping names exists, asked of the
service, and Lambda's answer when it does not (CreateEventSourceMapping's
`InvalidParameterValueException`, esm-reference.md 16): the error codes and wording the
SQS, Kinesis and DynamoDB Streams connectors share (each asks its own service).

Only a definite "does not exist" counts: when the service cannot be asked (unreachable,
no credentials, access denied), the mapping is made and says its problem in
`LastProcessingResult` once it runs, as a mapping whose source goes away does.
"""

from __future__ import annotations

QUEUE_MISSING = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
STREAM_MISSING = frozenset({"ResourceNotFoundException"})
# Lambda's words, as AWS answered (conformance recordings of the not existing sources).
QUEUE_NOT_FOUND = (
    "Error occurred while ReceiveMessage. SQS Error Code: "
    "AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue does "
    "not exist."
)
STREAM_NOT_FOUND = "Stream not found: {arn}"
