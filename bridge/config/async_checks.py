"""Config checks of asynchronous invocation: the destinations a function's `async:` names
exist and can take what it sends them (esm-reference.md 10.5)."""

from __future__ import annotations

from bridge.config.model import BridgeConfig

Found = list[tuple[tuple[str | int, ...], str]]
# Only for asynchronous invocation records, as on AWS.
ASYNC_ONLY_TYPES = frozenset({"eventbridge", "lambda"})
DEAD_LETTER_TYPES = frozenset({"sqs", "sns"})


def async_problems(config: BridgeConfig) -> Found:
    problems: Found = []
    defined = ", ".join(sorted(config.destinations)) or "none"
    for name, function in config.functions.items():
        settings = function.async_
        at = ("functions", name, "async")
        for key, reference in (
            ("on_success", settings.destinations.on_success),
            ("on_failure", settings.destinations.on_failure),
        ):
            if reference is None:
                continue
            destination = config.destinations.get(reference)
            if destination is None:
                message = f"no destination named {reference!r} (defined: {defined})"
                problems.append(((*at, "destinations", key), message))
            elif key == "on_success" and destination.type == "s3":
                message = (
                    f"{reference!r} is an s3 destination, which takes failures only (as on AWS)"
                )
                problems.append(((*at, "destinations", key), message))
        reference = settings.dead_letter
        if reference is not None:
            destination = config.destinations.get(reference)
            if destination is None:
                message = f"no destination named {reference!r} (defined: {defined})"
                problems.append(((*at, "dead_letter"), message))
            elif destination.type not in DEAD_LETTER_TYPES:
                message = (
                    f"{reference!r} is of type {destination.type}; a dead-letter queue is an "
                    "sqs or sns destination (as on AWS)"
                )
                problems.append(((*at, "dead_letter"), message))
    for name, destination in config.destinations.items():
        target = getattr(destination, "function", None)
        if destination.type == "lambda" and target not in config.functions:
            functions = ", ".join(sorted(config.functions))
            message = f"no function named {target!r} (defined: {functions})"
            problems.append((("destinations", name, "function"), message))
    for index, mapping in enumerate(config.mappings):
        reference = mapping.on_failure
        destination = config.destinations.get(reference) if reference else None
        if destination is not None and destination.type in ASYNC_ONLY_TYPES:
            message = (
                f"{reference!r} ({destination.type}) takes records of asynchronous "
                "invocations only (as on AWS), not of mappings"
            )
            problems.append(
                (("mappings", index, "destination_config", "on_failure", "destination"), message)
            )
    return problems
