"""Example handler for config/schedule.yaml.

Prints each firing: EventBridge's scheduled event (its rule and scheduled time), or the
schedule's own input. Fails on purpose when the input says `fail: true`, so you can
watch the retries and the failure destination.
"""


def handler(event, context):
    if event.get("detail-type") == "Scheduled Event":
        print(
            f"[{context.aws_request_id[:8]}] {event['resources'][0]} at {event['time']}", flush=True
        )
        return {"fired": event["time"]}
    print(f"[{context.aws_request_id[:8]}] input {event}", flush=True)
    if event.get("fail"):
        raise RuntimeError("the schedule's input asks for a failure")
    return {"job": event.get("job")}
