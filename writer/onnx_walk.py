"""Walking an ONNX graph and the graphs its nodes hold (Loop, If and Scan bodies): one place for
the attribute loop every graph rewrite and check needs."""

from __future__ import annotations

from typing import Iterator


def node_graphs(node) -> Iterator:
    """The graphs ``node`` holds as attributes (GRAPH and GRAPHS), in attribute order."""
    from onnx import AttributeProto
    for a in node.attribute:
        if a.type == AttributeProto.GRAPH:
            yield a.g
        yield from a.graphs


def all_graphs(graph) -> Iterator:
    """``graph`` and every graph nested in it, depth first."""
    yield graph
    for node in graph.node:
        for g in node_graphs(node):
            yield from all_graphs(g)
