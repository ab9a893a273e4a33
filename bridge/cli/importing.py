"""`lambda-bridge import sam|serverless FILE` and `run --template / --serverless`: a SAM
template or a serverless.yml as a lambda-bridge config.

The names and ARNs of the resources a template declares depend on the account and region:
`--endpoint-url` (default $AWS_ENDPOINT_URL, an emulator) or `--create-resources` asks the
endpoint which account it answers for (STS); otherwise `--account-id` (default
000000000000) and `--region` (default $AWS_REGION, $AWS_DEFAULT_REGION, us-east-1) are used
as given. `--create-resources` then creates the declared queues, streams, tables and topics
that are missing, through the `awsresources` connector (imported only then).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.errors import ConfigError
from bridge.importing.emit import emit
from bridge.importing.model import DEFAULT_API_LISTEN, ImportOptions, ImportResult
from bridge.importing.notes import TemplateError

if TYPE_CHECKING:
    from bridge.config.model import LoadedConfig

EXIT_INVALID = 2
RESOURCES_MODULE = "connectors.awsresources.resources"


def add_import_options(parser: argparse.ArgumentParser, *, for_run: bool) -> None:
    group = parser.add_argument_group("importing a SAM template or serverless.yml")
    if for_run:
        given = group.add_mutually_exclusive_group()
        given.add_argument("--template", type=Path, help="run a SAM / CloudFormation template")
        given.add_argument("--serverless", type=Path, help="run a serverless.yml")
    group.add_argument(
        "--parameter-overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="template parameters (also ParameterKey=K,ParameterValue=V)",
    )
    group.add_argument("--stage", help="serverless.yml: the stage (${opt:stage}; default dev)")
    group.add_argument(
        "--bucket-folder",
        action="append",
        default=[],
        metavar="BUCKET=FOLDER",
        help="watch FOLDER for the S3 events of BUCKET (a files mapping)",
    )
    group.add_argument(
        "--api-listen",
        default=DEFAULT_API_LISTEN,
        metavar="HOST:PORT",
        help="where HTTP triggers (Api, HttpApi, http, httpApi) are "
        f"served (default {DEFAULT_API_LISTEN})",
    )
    group.add_argument(
        "--create-resources",
        action="store_true",
        help="create the declared queues, streams, tables and topics that are missing",
    )
    group.add_argument(
        "--endpoint-url",
        help="the emulator the resources live in (default $AWS_ENDPOINT_URL; unset: AWS)",
    )
    group.add_argument("--region", help="default $AWS_REGION, $AWS_DEFAULT_REGION, else us-east-1")
    group.add_argument(
        "--account-id",
        help="the account in ARNs (default: asked from the endpoint, else 000000000000)",
    )
    group.add_argument(
        "--stack-name",
        default="local",
        help="AWS::StackName, and the prefix of names made up for "
        "unnamed resources (default local)",
    )
    group.add_argument(
        "--strict", action="store_true", help="anything not carried over is an error"
    )


def add_import_parser(commands: Any) -> None:
    command = commands.add_parser(
        "import", help="print a config made from a SAM template or serverless.yml"
    )
    kinds = command.add_subparsers(dest="import_kind", required=True, metavar="KIND")
    for kind, text in (
        ("sam", "a SAM or CloudFormation template"),
        ("serverless", "a serverless.yml"),
    ):
        parser = kinds.add_parser(kind, help=text)
        parser.add_argument("file", type=Path)
        add_import_options(parser, for_run=False)


def import_command(args: argparse.Namespace) -> int:
    try:
        result = import_from_args(args, args.import_kind, args.file)
        with _one_line(args.file):
            text = emit(result, f"lambda-bridge import {args.import_kind} {args.file}")
    except ConfigError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_INVALID
    sys.stdout.write(text)
    return 0


@contextmanager
def _one_line(path: Path) -> Iterator[None]:
    """What importing (for `import`, `run` and a reload alike) may raise, as a ConfigError
    of one line."""
    try:
        yield
    except TemplateError as exc:
        raise ConfigError([str(exc)]) from None
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        # A shape no rule foresaw (a list where a mapping belongs, ...): one line, and the
        # template's place is unknown, so the file is named.
        raise ConfigError([f"{path}: cannot be imported: {type(exc).__name__}: {exc}"]) from None


def import_from_args(args: argparse.Namespace, kind: str, path: Path) -> ImportResult:
    """Import (and with --create-resources create); notes go to stderr. ConfigError with
    one line per problem."""
    options = _options(args)
    if (args.create_resources or options.endpoint_url) and args.account_id is None:
        options.account_id = _with_resources().run_account_id(options)
    with _one_line(path):
        result = _import(kind, path, options)
    for line in result.notes.lines_for_stderr():
        print(line, file=sys.stderr)
    problems = result.notes.strict_problems()
    if problems:
        raise ConfigError(problems)
    if args.create_resources and result.resources:
        _with_resources().run_create(result, options)
    return result


def run_config(
    args: argparse.Namespace, kind: str, path: Path
) -> tuple[LoadedConfig, Callable[[], LoadedConfig]]:
    """`run --template / --serverless`: the LoadedConfig, and what a reload calls (the
    template imported again, no resources created). ConfigError as for `import`."""
    result = import_from_args(args, kind, path)
    account_id = result.account_id

    def read() -> LoadedConfig:
        options = _options(args)
        options.account_id = account_id
        with _one_line(path):
            return _loaded(_import(kind, path, options), kind, path)

    with _one_line(path):
        return _loaded(result, kind, path), read


def _loaded(result: ImportResult, kind: str, path: Path) -> LoadedConfig:
    from bridge.config.loading import load_config_text

    return load_config_text(emit(result, f"lambda-bridge run --{kind}"), f"{path} (imported)")


def _import(kind: str, path: Path, options: ImportOptions) -> ImportResult:
    if kind == "sam":
        from bridge.importing.sam import import_sam

        return import_sam(path, options)
    from bridge.importing.serverless import import_serverless

    return import_serverless(path, options)


def _options(args: argparse.Namespace) -> ImportOptions:
    region = (
        args.region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    return ImportOptions(
        region=region,
        account_id=args.account_id or "000000000000",
        stack_name=args.stack_name,
        endpoint_url=args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
        parameter_overrides=_pairs(args.parameter_overrides, "--parameter-overrides"),
        stage=args.stage,
        strict=args.strict,
        bucket_folders=_pairs(args.bucket_folder, "--bucket-folder"),
        api_listen=args.api_listen,
    )


def _pairs(given: list[str], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in given:
        if item.startswith("ParameterKey="):
            fields = dict(part.split("=", 1) for part in item.split(",") if "=" in part)
            key, value = fields.get("ParameterKey", ""), fields.get("ParameterValue", "")
        else:
            key, _, value = item.partition("=")
        if not key or "=" not in item:
            raise ConfigError([f"{option} {item!r}: write KEY=VALUE"])
        pairs[key] = value
    return pairs


class _Resources:
    """The awsresources connector, imported only when resources are asked for."""

    def __init__(self) -> None:
        try:
            # By name: the core never imports a connector at its top (import-linter).
            resources: Any = importlib.import_module(RESOURCES_MODULE)
        except ImportError as exc:
            raise ConfigError(
                [
                    "--create-resources and --endpoint-url need the AWS extra: "
                    f"pip install 'lambda-bridge[aws]' ({exc})"
                ]
            ) from None
        self.resources = resources

    def run_account_id(self, options: ImportOptions) -> str:
        try:
            return str(asyncio.run(self.resources.account_id(options.endpoint_url, options.region)))
        except self.resources.ResourceError as exc:
            raise ConfigError([str(exc)]) from None

    def run_create(self, result: ImportResult, options: ImportOptions) -> None:
        try:
            created = asyncio.run(
                self.resources.create_missing(
                    result.resources, options.endpoint_url, options.region
                )
            )
        except self.resources.ResourceError as exc:
            raise ConfigError([f"{result.source}: creating resources: {exc}"]) from None
        for logical_id in created:
            print(f"note: {result.source}: created {logical_id}", file=sys.stderr)


def _with_resources() -> _Resources:
    return _Resources()
