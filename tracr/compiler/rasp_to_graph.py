"""Stage 1: the RASP expression DAG as a networkx graph (edges child -> parent, nodes keyed by label)."""

from __future__ import annotations

import collections
import dataclasses

import networkx as nx

from tracr.compiler import nodes
from tracr.rasp import rasp


@dataclasses.dataclass
class ExtractRaspGraphOutput:
    graph: nx.DiGraph
    sink: dict  # the output node's attribute dict
    sources: list  # attribute dicts of nodes without children


def extract_rasp_graph(tip: rasp.SOp) -> ExtractRaspGraphOutput:
    """Breadth-first search from the output expression; node insertion order is BFS order."""
    graph = nx.DiGraph()
    sources = []
    queue = collections.deque([tip])
    graph.add_node(tip.label, **{nodes.ID: tip.label, nodes.EXPR: tip})
    seen = {tip.label}
    while queue:
        expr = queue.popleft()
        if not expr.children:
            sources.append(graph.nodes[expr.label])
        for child in expr.children:
            if child.label not in seen:
                seen.add(child.label)
                graph.add_node(child.label, **{nodes.ID: child.label, nodes.EXPR: child})
                queue.append(child)
            graph.add_edge(child.label, expr.label)
    return ExtractRaspGraphOutput(graph=graph, sink=graph.nodes[tip.label], sources=sources)
