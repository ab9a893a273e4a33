"""The arguments of `lambda-bridge failures` (bridge.cli.failures runs them)."""

from __future__ import annotations

import argparse

# StartMessageMoveTask's MaxNumberOfMessagesPerSecond is at most 500; left out, AWS picks a
# rate from the backlog. Here the rate is always fixed: this default, or --max-per-second.
DEFAULT_MOVE_RATE = 100
MAX_MOVE_RATE = 500


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    failures = commands.add_parser("failures", help="list, show and redrive failure records")
    actions = failures.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="a mapping's failure records")
    listing.add_argument("mapping", metavar="MAPPING")
    show = actions.add_parser("show", help="one failure record, with its records")
    show.add_argument("id", metavar="ID", help="as `list` prints it: MAPPING/ID")
    redrive = actions.add_parser("redrive", help="send failed records again")
    redrive.add_argument("mapping", metavar="MAPPING")
    which = redrive.add_mutually_exclusive_group()
    which.add_argument("--ids", nargs="+", metavar="ID", help="these failure records")
    which.add_argument("--all", action="store_true", help="every record not yet redriven")
    redrive.add_argument("--dry-run", action="store_true", help="only say what would be sent")
    redrive.add_argument(
        "--max-per-second",
        type=float,
        default=DEFAULT_MOVE_RATE,
        help=f"SQS dead-letter queues: messages moved per second (default {DEFAULT_MOVE_RATE}, "
        f"at most {MAX_MOVE_RATE}, as StartMessageMoveTask)",
    )
    redrive.add_argument("--limit", type=int, help="SQS dead-letter queues: move at most N")
    redrive.add_argument(
        "--dlq", metavar="URL", help="SQS: this dead-letter queue (default: the redrive policy's)"
    )
    for command in (listing, redrive):
        command.add_argument("--since", help="records since an ISO time, or for a duration (2h)")
    for command in (listing, show, redrive):
        command.add_argument("--config", "-c", required=True, help="the daemon's config file")
