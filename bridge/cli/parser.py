"""The command line's arguments: one sub-command each, parsed by `build_parser()`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn

from bridge import __version__
from bridge.cli.importing import add_import_options, add_import_parser

EXIT_INVALID = 2


class _Parser(argparse.ArgumentParser):
    """A usage mistake is one line, as every other error, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INVALID, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    add_import_options(run, for_run=True)

    validate = commands.add_parser(
        "validate", help="check a config file without connecting to anything"
    )
    validate.add_argument("config", type=Path)
    validate.add_argument(
        "--unit", type=Path, help="systemd unit that runs it: warn if TimeoutStopSec is too short"
    )
    validate.add_argument(
        "--compose", type=Path, help="compose file that runs it: warn if stop_grace_period is short"
    )
    validate.add_argument(
        "--stop-timeout", type=float, metavar="SECONDS", help="the supervisor's stop timeout"
    )

    invoke = commands.add_parser("invoke", help="invoke a configured function once with an event")
    invoke.add_argument("function")
    invoke.add_argument(
        "--config", "-c", type=Path, help="config file (default: the bundled example)"
    )
    invoke.add_argument("--event", help="event file ('-': stdin; default {})")
    invoke.add_argument(
        "--invocation-type",
        choices=("RequestResponse", "Event", "DryRun"),
        default="RequestResponse",
        help="as Lambda's Invoke; Event queues the event on a running daemon (its api:)",
    )
    invoke.add_argument(
        "--log-type",
        choices=("None", "Tail"),
        default="None",
        help="Tail: also print the invocation's last 4 KB of log",
    )
    invoke.add_argument(
        "--qualifier", help="version or alias to invoke (through a running daemon's API)"
    )
    invoke.add_argument(
        "--url",
        help="invoke through the running daemon's Lambda API at this URL (default for "
        "Event and --qualifier: the config's api.listen)",
    )

    for name, text in (
        ("status", "show the state, lag and rates of a running daemon's mappings"),
        ("reload", "make a running daemon re-read its config file"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--url", help="admin endpoint (default: from --config, or :9090)")
        command.add_argument("--config", "-c", type=Path, help="the daemon's config file")
        given = command.add_mutually_exclusive_group()
        given.add_argument(
            "--token-file",
            type=Path,
            metavar="FILE",
            help="read the bearer token from FILE (default: http.token of --config, else "
            "$LAMBDA_BRIDGE_HTTP_TOKEN)",
        )
        given.add_argument(
            "--token",
            help="the bearer token itself; every user of the machine can read it in ps: "
            "prefer --token-file or LAMBDA_BRIDGE_HTTP_TOKEN",
        )
        if name == "status":
            command.add_argument(
                "--interval",
                type=float,
                default=1.0,
                help="seconds between the two samples rates are computed from (0: no rates)",
            )

    commands.add_parser("schema", help="print the JSON Schema of the config file")
    add_import_parser(commands)

    reset = commands.add_parser(
        "reset-checkpoints",
        help="forget the saved positions of mappings (they start at their starting_position)",
    )
    reset.add_argument("--config", "-c", type=Path, required=True)
    reset.add_argument("mappings", nargs="+", metavar="MAPPING")

    from bridge.cli.failureargs import add_commands as add_failure_commands

    add_failure_commands(commands)

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
