"""Checks of a loaded config that pydantic cannot make: references between sections,
per-source-family settings, filter patterns, the admin endpoint's exposure, and what
connectors check themselves."""

from __future__ import annotations

from bridge.addresses import is_loopback, parse_listen
from bridge.config.async_checks import async_problems
from bridge.config.family_checks import check_mapping_settings
from bridge.config.http_routes import trigger_problems
from bridge.config.model import ApiConfig, BridgeConfig, HttpConfig, LoadedConfig, MappingConfig
from bridge.config.version_checks import check_versions
from bridge.filtering.criteria import filter_problems
from bridge.folders import folder_problem

Found = list[tuple[tuple[str | int, ...], str]]


def check_config(loaded: LoadedConfig) -> tuple[Found, Found]:
    """Problems pydantic cannot see (references, per-family settings, filter patterns,
    connector checks), and warnings."""

    config = loaded.config
    problems: Found = _http_problems(config.http) + _api_problems(config.api)
    problems += trigger_problems(config.http_triggers, config.functions, config.api is not None)
    problems += async_problems(config)
    warnings: Found = []
    state_dir = folder_problem(config.state_dir)
    if state_dir is not None:
        problems.append((("state_dir",), state_dir))
    for name, destination in config.destinations.items():
        problems += [
            (("destinations", name, *path), message) for path, message in destination.check()
        ]
    for name, function in config.functions.items():
        problems += [
            (("functions", name, *path), message)
            for path, message in function.check(loaded.build_context)
        ]
        problems += [
            (("functions", name, *path), message)
            for path, message in check_versions(function, loaded.build_context)
        ]
    seen: set[str] = set()
    for index, mapping in enumerate(config.mappings):
        at = ("mappings", index)
        if mapping.name in seen:
            problems.append(((*at, "name"), f"another mapping is already named {mapping.name!r}"))
        seen.add(mapping.name)
        if mapping.function not in config.functions:
            problems.append(((*at, "function"), _function_problem(mapping.function, config)))
        problem = _destination_problem(mapping, config)
        if problem:
            problems.append(((*at, "destination_config", "on_failure", "destination"), problem))
        problems += [((*at, *path), message) for path, message in check_mapping_settings(mapping)]
        problems += [((*at, "source", *path), message) for path, message in mapping.source.check()]
        warnings += [
            ((*at, "source", *path), message) for path, message in mapping.source.cautions()
        ]
        problems += [
            ((*at, *path), message) for path, message in mapping.source.check_mapping(mapping)
        ]
        found, cautions = filter_problems(
            mapping.filter_patterns,
            mapping.source.filter_data_key,
            config.limits.filters_per_mapping,
            mapping.name,
        )
        problems += [((*at, "filter_criteria", *path), message) for path, message in found]
        warnings += [((*at, "filter_criteria", *path), message) for path, message in cautions]
    return problems, warnings


def _function_problem(reference: str, config: BridgeConfig) -> str:
    name, colon, qualifier = reference.partition(":")
    if colon and name in config.functions:
        return (
            f"mappings invoke a function's $LATEST: name the function ({name!r}) without "
            f"the qualifier {qualifier!r}; invoking a version or alias is done through the API"
        )
    defined = ", ".join(sorted(config.functions))
    return f"no function named {reference!r} (defined: {defined})"


def _http_problems(http: HttpConfig) -> Found:
    if not http.enabled:
        return []
    try:
        host, _ = parse_listen(http.address)
    except ValueError as exc:
        return [(("http", "listen"), str(exc))]
    if not is_loopback(host) and http.bearer_token is None:
        return [
            (
                ("http", "token"),
                f"the admin endpoint listens on {http.address}, beyond loopback: set "
                "http.token (or LAMBDA_BRIDGE_HTTP_TOKEN) so it requires a bearer token",
            )
        ]
    return []


def _api_problems(api: ApiConfig | None) -> Found:
    if api is None:
        return []
    try:
        host, _ = parse_listen(api.listen)
    except ValueError as exc:
        return [(("api", "listen"), str(exc))]
    if not is_loopback(host) and api.credentials is None:
        return [
            (
                ("api", "credentials"),
                f"the Lambda API listens on {api.listen}, beyond loopback: set "
                "api.credentials (access_key_id, and secret_access_key from ${VAR}) so that "
                "every request's SigV4 signature is verified",
            )
        ]
    return []


def _destination_problem(mapping: MappingConfig, config: BridgeConfig) -> str | None:
    reference = mapping.on_failure
    if reference is None or reference in config.destinations:
        return None
    try:
        if mapping.source.destination_for(reference) is not None:
            return None
    except ValueError as exc:
        return str(exc)
    defined = ", ".join(sorted(config.destinations)) or "none"
    return f"no destination named {reference!r} (defined: {defined})"
