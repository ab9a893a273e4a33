"""Asynchronous invocation (`X-Amz-Invocation-Type: Event`, esm-reference.md 10.5 and 12).

An accepted event is committed to its function's durable queue (`queue`) before the 202 is
answered; a worker per function (`worker`) invokes it, retries it as Lambda does, and
sends its record to the on-success / on-failure destinations and the dead-letter queue
(`records`, `delivery`); the event leaves the queue only once those are delivered.
`service` ties the queues and workers to the daemon; `overrides` keeps the settings made
through the event-invoke-config API.
"""
