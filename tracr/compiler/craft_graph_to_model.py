"""Stage 4: schedule the blocks into alternating attention/MLP half-layers and merge parallel blocks.

The scheme is tracr's, so layer counts agree with it:
1. computational depth = longest path from a source, counting S-op nodes (selectors add 0);
2. blocks are grouped by depth; if every block at depth d is attention and every block at d+1 is MLP, the deeper
   depths shift down by one (packing attention -> MLP pairs into one layer);
3. half-layer = 2 (depth - 1) + (1 for MLP); a SelectorWidth puts its head at the even and its MLP at the odd
   slot of its depth;
4. heads in one slot form a multi-head layer (in graph insertion order), MLPs in one slot one wider MLP.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import networkx as nx

from tracr.compiler import nodes
from tracr.craft import bases, transformers
from tracr.rasp import rasp

ATTN, MLP, BOTH = "attn", "mlp", "both"


def block_kind(block) -> Optional[str]:
    if block is None:
        return None
    if isinstance(block, tuple):
        return BOTH
    return ATTN if isinstance(block, transformers.AttentionHead) else MLP


def computational_depth(graph: nx.DiGraph, weight: dict) -> dict:
    """Longest-path depth: depth(n) = weight(n) + max depth of its predecessors (sources: 0)."""
    depth = {}
    for n in nx.topological_sort(graph):
        preds = list(graph.predecessors(n))
        depth[n] = 0 if not preds else weight[n] + max(depth[p] for p in preds)
    return depth


def allocate_layers(graph: nx.DiGraph, kinds: dict, weight: dict) -> dict:
    """Maps each node with a block to its half-layer index (its MLP's index for SelectorWidth: head is one less).

    Args:
        graph: DAG, edges child -> parent.
        kinds: node -> ATTN / MLP / BOTH / None.
        weight: node -> 1 for S-ops, 0 for selectors.
    """
    depth = computational_depth(graph, weight)
    active = {n: depth[n] for n, k in kinds.items() if k is not None}
    if not active:
        return {}
    d = min(active.values())
    while d < max(active.values()):
        at_d = [kinds[n] for n, v in active.items() if v == d]
        at_next = [kinds[n] for n, v in active.items() if v == d + 1]
        if at_d and at_next and all(k == ATTN for k in at_d) and all(k == MLP for k in at_next):
            active = {n: (v - 1 if v > d else v) for n, v in active.items()}
        d += 1
    return {n: 2 * (v - 1) + (0 if kinds[n] == ATTN else 1) for n, v in active.items()}


@dataclasses.dataclass
class CraftModel:
    """The scheduled craft model plus what the assembler and users need to know about it.

    Attributes:
        half_layers: half-layer index -> MultiAttentionHead (even) or MLP (odd).
        residual_space: the union of every block's space (tokens, indices, one and output are added later).
    """

    half_layers: dict
    residual_space: bases.VectorSpaceWithBasis

    def as_series(self) -> transformers.SeriesWithResiduals:
        blocks = [self.half_layers[i] for i in sorted(self.half_layers)]
        return transformers.SeriesWithResiduals(blocks, self.residual_space)


def craft_graph_to_model(graph: nx.DiGraph, sources: list) -> CraftModel:
    """Allocates layers and merges blocks (see module docstring)."""
    kinds = {n: block_kind(graph.nodes[n].get(nodes.MODEL_BLOCK)) for n in graph.nodes}
    weight = {n: int(isinstance(graph.nodes[n][nodes.EXPR], rasp.SOp)) for n in graph.nodes}
    slot_of = allocate_layers(graph, kinds, weight)
    heads: dict[int, list] = {}
    mlps: dict[int, list] = {}
    for n in graph.nodes:  # insertion (BFS) order fixes the head order
        if n not in slot_of:
            continue
        block, slot = graph.nodes[n][nodes.MODEL_BLOCK], slot_of[n]
        if kinds[n] == BOTH:
            heads.setdefault(slot - 1, []).append(block[0])
            mlps.setdefault(slot, []).append(block[1])
        elif kinds[n] == ATTN:
            heads.setdefault(slot, []).append(block)
        else:
            mlps.setdefault(slot, []).append(block)
    half_layers: dict = {s: transformers.MultiAttentionHead(hs) for s, hs in heads.items()}
    half_layers.update({s: transformers.MLP.combine_in_parallel(ms) for s, ms in mlps.items()})
    space = bases.join_vector_spaces(*(b.residual_space for b in half_layers.values()))
    return CraftModel(half_layers=half_layers, residual_space=space)
