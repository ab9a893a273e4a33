"""The `async:` settings of a function and the destinations they name are checked when
the config is loaded, with file:line: key: message."""

from __future__ import annotations

from pathlib import Path

from bridge.config.loading import load_config_text
from tests.unit.config_support import problems

CONFIG = """\
functions:
  f:
    invoker: python
    handler: handler.py:handler
    async:
      maximum_retry_attempts: {retries}
      destinations: {{on_success: {success}, on_failure: gone}}
      dead_letter: {dead_letter}
  g: {{invoker: python, handler: handler.py:handler, reserved_concurrency: 0}}
destinations:
  failed: {{type: file, path: ./failed}}
  bucket: {{type: s3, bucket: my-bucket}}
  forward: {{type: lambda, function: nobody}}
  bus: {{type: eventbridge, event_bus: "arn:aws:events:eu-west-1:123456789012:event-bus/b"}}
mappings:
  - name: inbox
    function: g
    source: {{type: files, path: ./inbox}}
    destination_config: {{on_failure: {{destination: bus}}}}
"""


def test_async_settings_and_their_destinations_are_checked(workdir: Path) -> None:
    """Retries above 2, an unknown destination, s3 for successes, a file as DLQ, a lambda
    destination naming no function and an event bus under a mapping are each refused."""
    found = problems(CONFIG.format(retries=3, success="bucket", dead_letter="failed"))
    assert found == [
        "bridge.yaml:6: functions.f.async.maximum_retry_attempts: Input should be less than "
        "or equal to 2"
    ]
    found = problems(CONFIG.format(retries=2, success="bucket", dead_letter="failed"))
    assert found == [
        "bridge.yaml:7: functions.f.async.destinations.on_success: 'bucket' is an s3 "
        "destination, which takes failures only (as on AWS)",
        "bridge.yaml:7: functions.f.async.destinations.on_failure: no destination named "
        "'gone' (defined: bucket, bus, failed, forward)",
        "bridge.yaml:8: functions.f.async.dead_letter: 'failed' is of type file; a "
        "dead-letter queue is an sqs or sns destination (as on AWS)",
        "bridge.yaml:13: destinations.forward.function: no function named 'nobody' (defined: f, g)",
        "bridge.yaml:19: mappings[0].destination_config.on_failure.destination: 'bus' "
        "(eventbridge) takes records of asynchronous invocations only (as on AWS), not of "
        "mappings",
    ]


def test_defaults_are_lambdas_and_reserved_concurrency_may_be_zero(workdir: Path) -> None:
    """Without `async:` a function retries twice and keeps events six hours; reserved
    concurrency 0 is accepted."""
    text = (
        "functions:\n  f: {invoker: python, handler: handler.py:handler, reserved_concurrency: 0}\n"
    )
    function = load_config_text(text, "bridge.yaml").config.functions["f"]
    assert function.reserved_concurrency == 0
    assert function.async_.maximum_retry_attempts == 2
    assert function.async_.maximum_event_age_in_seconds == 21_600
    assert function.async_.retry_delay_scale == 1.0
