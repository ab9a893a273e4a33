"""`lambda-bridge`: run | validate | schema | generate-event | filter-test | reset-checkpoints."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bridge import __version__
from bridge.errors import ConfigError

EXIT_INVALID = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lambda-bridge", description="AWS Lambda event source mappings that run anywhere."
    )
    parser.add_argument("--version", action="version", version=f"lambda-bridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the mappings of a config file until SIGTERM")
    run.add_argument(
        "--config",
        "-c",
        type=Path,
        help="config file (default: the bundled example, watching ./inbox)",
    )
    run.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="overrides log.level"
    )
    run.add_argument(
        "--log-format", choices=["auto", "console", "json"], help="overrides log.format"
    )

    validate = commands.add_parser(
        "validate", help="check a config file without connecting to anything"
    )
    validate.add_argument("config", type=Path)

    commands.add_parser("schema", help="print the JSON Schema of the config file")

    reset = commands.add_parser(
        "reset-checkpoints",
        help="forget the saved positions of mappings (they start at their starting_position)",
    )
    reset.add_argument("--config", "-c", type=Path, required=True)
    reset.add_argument("mappings", nargs="+", metavar="MAPPING")

    generate = commands.add_parser("generate-event", help="print a sample event for a source type")
    generate.add_argument("source", help="source type (e.g. sqs, kafka) or s3, sns")
    generate.add_argument("--records", type=int, default=1, help="how many records (default 1)")

    filters = commands.add_parser(
        "filter-test", help="match filter patterns against events, as a mapping would"
    )
    one_or_many = filters.add_mutually_exclusive_group(required=True)
    one_or_many.add_argument("--pattern", help="a filter pattern (JSON)")
    one_or_many.add_argument(
        "--cases", metavar="FILE", help="JSON Lines of {pattern, event, source?} ('-': stdin)"
    )
    filters.add_argument("--event", help="the event (JSON), with --pattern")
    filters.add_argument(
        "--source", help="match the event as one record of this source type (e.g. sqs, kafka)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {
        "run": _run,
        "validate": _validate,
        "schema": _schema,
        "generate-event": _generate_event,
        "reset-checkpoints": _reset_checkpoints,
        "filter-test": _filter_test,
    }
    return handlers[args.command](args)


def _report(error: ConfigError) -> int:
    for problem in error.problems:
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_INVALID


def _run(args: argparse.Namespace) -> int:
    from bridge import logs
    from bridge.app import Daemon
    from bridge.bundled import bundled_root, example_config
    from bridge.config import load_config

    try:
        if args.config is None:
            loaded = load_config(example_config(), handler_root=bundled_root())
        else:
            loaded = load_config(args.config)
    except ConfigError as error:
        return _report(error)
    log = loaded.config.log
    logs.configure(args.log_level or log.level, args.log_format or log.format)
    if loaded.warnings:
        import structlog

        warn = structlog.get_logger("bridge.config").warning
        for warning in loaded.warnings:
            warn("config.warning", warning=warning)
    return asyncio.run(Daemon(loaded).run())


def _validate(args: argparse.Namespace) -> int:
    from bridge.config import load_config

    try:
        loaded = load_config(args.config)
    except ConfigError as error:
        return _report(error)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    config = loaded.config
    enabled = sum(mapping.enabled for mapping in config.mappings)
    counts = (
        f"{len(config.functions)} functions, {len(config.destinations)} destinations, "
        f"{len(config.mappings)} mappings, {enabled} enabled"
    )
    print(f"{args.config}: valid ({counts})")
    return 0


def _schema(_: argparse.Namespace) -> int:
    from bridge.codec import dumps_text
    from bridge.config import config_model

    print(dumps_text(config_model().model_json_schema(), indent=True))
    return 0


# Events Lambda receives by push rather than from a mapping, for testing handlers.
_PUSHED_EVENTS = {
    "s3": "connectors.s3.events:sample_event",
    "sns": "connectors.sns.events:sample_event",
}


def _generate_event(args: argparse.Namespace) -> int:
    import importlib

    from bridge.plugins import Identity, registered

    sources = registered("sources")
    known = sorted({*sources, *_PUSHED_EVENTS})
    if args.source not in known:
        print(
            f"error: unknown event type {args.source!r} (known: {', '.join(known)})",
            file=sys.stderr,
        )
        return EXIT_INVALID
    if not 1 <= args.records <= 10_000:
        print("error: --records must be between 1 and 10000", file=sys.stderr)
        return EXIT_INVALID
    if args.source in sources:
        event = sources[args.source].sample_event(args.records, Identity())
    else:
        module, _, function = _PUSHED_EVENTS[args.source].partition(":")
        event = getattr(importlib.import_module(module), function)(args.records, Identity())
    from bridge.codec import dumps_text, loads

    print(dumps_text(loads(event), indent=True))
    return 0


def _filter_test(args: argparse.Namespace) -> int:
    from bridge import filtertest

    if args.cases is not None:
        if args.event is not None or args.source is not None:
            print("error: --cases takes its events and sources from the file", file=sys.stderr)
            return EXIT_INVALID
        return filtertest.run_cases(args.cases)
    if args.event is None:
        print("error: --pattern needs --event", file=sys.stderr)
        return EXIT_INVALID
    return filtertest.run_single(args.pattern, args.event, args.source)


def _reset_checkpoints(args: argparse.Namespace) -> int:
    from bridge.config import load_config

    try:
        loaded = load_config(args.config)
    except ConfigError as error:
        return _report(error)
    names = {mapping.name for mapping in loaded.config.mappings}
    unknown = [name for name in args.mappings if name not in names]
    if unknown:
        listed = ", ".join(map(repr, unknown))
        print(f"error: no mapping named {listed} in {args.config}", file=sys.stderr)
        return EXIT_INVALID

    async def reset() -> dict[str, int]:
        store = loaded.config.checkpoint_store.build(loaded.build_context)
        await store.open()
        try:
            return {name: await store.clear(f"{name}|") for name in args.mappings}
        finally:
            await store.close()

    for name, count in asyncio.run(reset()).items():
        print(f"{name}: {count} saved positions removed")
    return 0
