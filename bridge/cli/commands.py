"""`lambda-bridge`: run | validate | schema | generate-event | filter-test | reset-checkpoints |
invoke | status | reload | failures | import."""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.cli.importing import import_command
from bridge.cli.parser import EXIT_INVALID, build_parser
from bridge.errors import BridgeError, ConfigError

if TYPE_CHECKING:
    from bridge.config.model import LoadedConfig

SWITCH_INTERVAL_SECONDS = 0.001


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "run": _run,
        "validate": _validate,
        "schema": _schema,
        "generate-event": _generate_event,
        "reset-checkpoints": _reset_checkpoints,
        "filter-test": _filter_test,
        "invoke": _invoke,
        "status": _admin_command,
        "reload": _admin_command,
        "failures": _failures,
        "import": import_command,
    }
    return handlers[args.command](args)


def _report(error: ConfigError) -> int:
    for problem in error.problems:
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_INVALID


def _run(args: argparse.Namespace) -> int:
    from bridge.app import Daemon
    from bridge.cli.bundled import bundled_root, example_config
    from bridge.config.loading import load_config
    from bridge.ops import logs

    reader: Callable[[], LoadedConfig] | None = None
    try:
        if args.template is not None or args.serverless is not None:
            if args.config is not None:
                return _report(
                    ConfigError(["--config cannot be given with --template or --serverless"])
                )
            loaded, reader = _imported(args)
        elif args.config is None:
            loaded = load_config(example_config(), handler_root=bundled_root())
        else:
            loaded = load_config(args.config)
            reader = functools.partial(load_config, args.config)
    except ConfigError as error:
        return _report(error)
    log = loaded.config.log
    logs.configure(args.log_level or log.level, args.log_format or log.format)
    if loaded.warnings:
        import structlog

        warn = structlog.get_logger("bridge.config.model").warning
        for warning in loaded.warnings:
            warn("config.warning", warning=warning)
    # Worker threads (sync handlers, hashing, SQLite) hold the GIL for up to this long
    # before the event loop gets it back: 5 ms by default, paid on every wake-up of the
    # loop. 1 ms keeps /healthz, the systemd watchdog and the lanes responsive.
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    return asyncio.run(Daemon(loaded, reader).run())


def _imported(args: argparse.Namespace) -> tuple[LoadedConfig, Callable[[], LoadedConfig]]:
    """The config of `run --template` / `--serverless`, and how a reload reads it again."""
    from bridge.cli.importing import run_config

    kind, path = (
        ("sam", args.template) if args.template is not None else ("serverless", args.serverless)
    )
    return run_config(args, kind, path)


def _validate(args: argparse.Namespace) -> int:
    from bridge.config.loading import load_config

    try:
        loaded = load_config(args.config)
    except ConfigError as error:
        return _report(error)
    from bridge.cli.stoptimeout import stop_timeout_warnings

    if args.stop_timeout is not None and not 0 <= args.stop_timeout < float("inf"):
        print("error: --stop-timeout must be a number of seconds, 0 or more", file=sys.stderr)
        return EXIT_INVALID
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    config = loaded.config
    try:
        stop_warnings = stop_timeout_warnings(
            config.drain_timeout_seconds,
            stop_timeout=args.stop_timeout,
            unit_file=args.unit,
            compose_file=args.compose,
        )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    for warning in stop_warnings:
        print(f"warning: {warning}", file=sys.stderr)
    enabled = sum(mapping.enabled for mapping in config.mappings)
    counts = (
        f"{len(config.functions)} functions, {len(config.destinations)} destinations, "
        f"{len(config.mappings)} mappings, {enabled} enabled"
    )
    print(f"{args.config}: valid ({counts})")
    return 0


def _schema(_: argparse.Namespace) -> int:
    from bridge.codec import dumps_text
    from bridge.config.model import config_model

    print(dumps_text(config_model().model_json_schema(), indent=True))
    return 0


# Events Lambda receives by push rather than from a mapping, for testing handlers.
_PUSHED_EVENTS = {
    "s3": "connectors.files.notifications:sample_event",
    "sns": "connectors.sns.events:sample_event",
}


def _generate_event(args: argparse.Namespace) -> int:
    import importlib

    from bridge.config.plugins import Identity
    from bridge.config.registry import registered

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
    from bridge.cli import filtertest

    if args.cases is not None:
        if args.event is not None or args.source is not None:
            print("error: --cases takes its events and sources from the file", file=sys.stderr)
            return EXIT_INVALID
        return filtertest.run_cases(args.cases)
    if args.event is None:
        print("error: --pattern needs --event", file=sys.stderr)
        return EXIT_INVALID
    return filtertest.run_single(args.pattern, args.event, args.source)


def _load_for_command(path: Path | None) -> LoadedConfig:
    from bridge.cli.bundled import bundled_root, example_config
    from bridge.config.loading import load_config

    if path is None:
        return load_config(example_config(), handler_root=bundled_root())
    return load_config(path)


def _invoke(args: argparse.Namespace) -> int:
    from bridge.cli import invoke as invokecli
    from bridge.ops import logs

    try:
        loaded = _load_for_command(args.config)
    except ConfigError as error:
        return _report(error)
    logs.configure("warning", "console")
    request = invokecli.InvokeRequest(
        args.function, args.event, args.invocation_type, args.log_type, args.qualifier, args.url
    )
    return invokecli.invoke(loaded, request)


def _failures(args: argparse.Namespace) -> int:
    from bridge.cli import failures
    from bridge.config.loading import load_config
    from bridge.ops import logs

    try:
        loaded = load_config(Path(args.config))
    except ConfigError as error:
        return _report(error)
    logs.configure("warning", "console")
    return failures.run(loaded, args)


def _admin_command(args: argparse.Namespace) -> int:
    from bridge.cli import ops as opscli
    from bridge.config.loading import load_config

    try:
        loaded = load_config(args.config) if args.config is not None else None
    except ConfigError as error:
        return _report(error)
    if args.command == "status" and not 0 <= args.interval <= 60:
        print("error: --interval must be between 0 and 60 seconds", file=sys.stderr)
        return EXIT_INVALID
    try:
        token = _admin_token(args, loaded)
        base = opscli.admin_url(args.url, loaded)
        if args.command == "status":
            return opscli.status(base, token, args.interval)
        return opscli.reload(base, token)
    except opscli.AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID


def _admin_token(args: argparse.Namespace, loaded: LoadedConfig | None) -> str | None:
    """--token-file, --token, the config's http.token, then $LAMBDA_BRIDGE_HTTP_TOKEN."""
    import os

    from bridge.cli import ops as opscli

    if args.token_file is not None:
        return opscli.read_token_file(args.token_file)
    if args.token:
        return str(args.token)
    configured = loaded.config.http.bearer_token if loaded else None
    return configured or os.environ.get("LAMBDA_BRIDGE_HTTP_TOKEN") or None


def _reset_checkpoints(args: argparse.Namespace) -> int:
    from bridge.config.loading import load_config

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

    try:
        removed = asyncio.run(reset())
    except BridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    for name, count in removed.items():
        print(f"{name}: {count} saved positions removed")
    return 0
