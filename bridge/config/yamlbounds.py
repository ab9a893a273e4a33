"""Bounds on what a YAML document may expand to.

An alias repeats its anchor's node wherever it is written, so a few lines of nested
anchors and aliases ("billion laughs") describe billions of nodes. Everything that
walks the parsed data (line tracking, `${VAR}` interpolation, validation) would walk
them all. The composed graph is checked first, visiting each distinct node once.
"""

from __future__ import annotations

import yaml

from bridge.errors import ConfigError

# How many nodes aliases may add to the file's own; `<<: *defaults` on every mapping of
# a large config stays far below.
MAX_ALIAS_NODES = 100_000
# A config is a few levels deep; anything deeper is not one.
MAX_DEPTH = 64


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def check_expansion(root: yaml.Node, name: str) -> None:
    """Raise ConfigError if aliases make the document more than MAX_ALIAS_NODES nodes
    larger than the file itself, if an anchor contains an alias of itself, or if the
    document, aliases expanded, is nested more than MAX_DEPTH levels. Linear in the
    number of distinct nodes."""
    sizes: dict[int, int] = {}
    heights: dict[int, int] = {}
    references: dict[int, int] = {}
    nodes: dict[int, yaml.Node] = {}
    open_nodes: set[int] = set()  # the path from the root to the node being visited
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            children = [id(child) for child in _children(node)]
            sizes[key] = 1 + sum(sizes[child] for child in children)
            heights[key] = 1 + max((heights[child] for child in children), default=0)
            continue
        references[key] = references.get(key, 0) + 1
        if key in open_nodes:
            raise ConfigError([_at(node, name, "an anchor contains an alias of itself")])
        if key in nodes:
            continue
        nodes[key] = node
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(_children(node)))
    if heights[id(root)] > MAX_DEPTH:
        deepest = root
        for _ in range(MAX_DEPTH):
            deepest = max(_children(deepest), key=lambda child: heights[id(child)])
        raise ConfigError([_at(deepest, name, f"nested more than {MAX_DEPTH} levels deep")])
    added = sizes[id(root)] - len(nodes)
    if added > MAX_ALIAS_NODES:
        worst = max(nodes, key=lambda key: sizes[key] * (references[key] - 1))
        problem = (
            f"the aliases of this anchor expand the document by {added} nodes; at most "
            f"{MAX_ALIAS_NODES} are allowed"
        )
        raise ConfigError([_at(nodes[worst], name, problem)])


def _at(node: yaml.Node, name: str, problem: str) -> str:
    return f"{name}:{node.start_mark.line + 1}: invalid YAML: {problem}"
