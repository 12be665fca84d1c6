"""Walking an ONNX graph and the graphs its nodes hold (Loop, If and Scan bodies): one place for
the attribute loop every graph rewrite and check needs, and for the rule every rewrite ends with
(an initializer it replaced goes when no node of any graph reads it: ``prune_initializers``)."""

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


def used_names(graph) -> set[str]:
    """Every value name a node of ``graph`` or of a graph nested in it reads."""
    return {name for g in all_graphs(graph) for n in g.node for name in n.input}


def prune_initializers(graph, candidates) -> None:
    """Drop the initializers named in ``candidates`` that no node reads, from ``graph`` and from
    every graph nested in it, in place (the others keep their order). A name read by any node of
    ``graph`` or of its nested graphs keeps its initializer: a Loop body reads its enclosing
    graphs' initializers by name, and a body that shadows a name keeps the outer one too (kept,
    never wrongly dropped)."""
    candidates = set(candidates)
    if not candidates:
        return
    used = used_names(graph)
    for g in all_graphs(graph):
        if any(t.name in candidates and t.name not in used for t in g.initializer):
            keep = [t for t in g.initializer if t.name not in candidates or t.name in used]
            del g.initializer[:]
            g.initializer.extend(keep)
