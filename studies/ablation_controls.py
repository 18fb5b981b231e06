"""Random controls for component ablations, and the ReLU-kink check every ablated model must pass to be sampled.

Atoms. The entries that heads and MLP layers own split into *atoms*, the smallest pieces that can be removed
without leaving a half-connected unit:
  * a hidden unit `L{i}.u{j}`: column j of W_in, b_in[j] and row j of W_out (2D + 1 entries);
  * a query-key dimension `L{i}.H{h}.qk{k}`: column k of W_Q and W_K, b_Q[k], b_K[k] (2D + 2 entries);
  * a value-output dimension `L{i}.H{h}.ov{k}`: column k of W_V, b_V[k] and row k of W_O (2D + 1 entries).
A head is its K qk and K ov atoms, an MLP layer its M units, an MLP slice its units. An atom is *live* when it
computes something (a unit: nonzero input and output weights; qk: nonzero query and key weights; ov: nonzero value
and output weights); compiled models have many dead atoms (unused key dimensions, padding units).

Controls. A random control of a component removes as many live and as many dead atoms as the component has, drawn
uniformly at random from all atoms of the model (the component's own included; embeddings and the layers' output
biases b_O, b_out belong to no atom and are never removed). Its entry count equals the component's to within one
entry per atom (qk atoms have one entry more than the others; both counts are recorded), and it removes the same
amount of structure: the same number of computing pieces and of idle ones. Why atoms rather than single weights:
removing single weights of a compiled MLP almost always leaves some unit exactly at its ReLU kink (removing the
weight that reads the residual's `one` direction, which acts as its bias, puts an "off" unit at 0; measured: 50
redraws found no kink-free control for most MLP layers), where the loss is one-sided and the LLC sampler's picture
fails. Why the whole model rather than "other weights of the same type": compiled programs are small and a
component often owns most of its type (`identity` has one MLP, the MLP of `length` holds 66 of the model's 98
nonzero weights), so same-type controls would not exist. A control may overlap the component (`overlap`, the share
of its atoms the component owns); where a component owns nearly all live atoms its controls resemble it, and its
effect relative to them is small by construction (reported). A program with a single component has no informative
control.

Kinks. A compiled model (relu_margin > 0) keeps every ReLU away from its kink: pre-activations are >= margin or
<= -margin on every real position. `kink_margin` measures the smallest |pre-activation| of every unit that still
matters to the loss (some sampled entry in its input and in its output row). Removed units are switched off by the
margin (b_in = -margin, as the compiler does for unused units), so nothing sampled reaches them. Removing atoms
upstream can still move a later unit's input close to its kink; controls are redrawn until the margin is at least
`tol` (recorded: `tries`); component ablations are checked and flagged, never redrawn.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import torch

from llc_estim.ablation import zero_ablate


@dataclasses.dataclass
class Atom:
    """The smallest removable piece of a head or MLP layer (module doc).

    Attributes:
        name: `L{i}.u{j}`, `L{i}.H{h}.qk{k}` or `L{i}.H{h}.ov{k}`.
        masks: parameter name -> bool tensor (True = owned).
        live: whether it computes something.
    """

    name: str
    masks: dict
    live: bool


def _mask_like(p: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(p, dtype=torch.bool)


def atoms(model) -> list[Atom]:
    """Every atom of every head and MLP layer of a `TransformerBody`, in layer order."""
    params = dict(model.named_parameters())
    out = []
    for i, blk in enumerate(model.blocks):
        for h, head in enumerate(blk.attn.heads):
            pre = f"blocks.{i}.attn.heads.{h}."
            for k in range(head.W_Q.shape[1]):
                m = {pre + n: _mask_like(params[pre + n]) for n in ("W_Q", "W_K", "b_Q", "b_K")}
                m[pre + "W_Q"][:, k] = m[pre + "W_K"][:, k] = m[pre + "b_Q"][k] = m[pre + "b_K"][k] = True
                live = bool((head.W_Q[:, k] != 0).any() or head.b_Q[k] != 0) and \
                    bool((head.W_K[:, k] != 0).any() or head.b_K[k] != 0)
                out.append(Atom(f"L{i}.H{h}.qk{k}", m, live))
            for k in range(head.W_V.shape[1]):
                m = {pre + n: _mask_like(params[pre + n]) for n in ("W_V", "b_V", "W_O")}
                m[pre + "W_V"][:, k] = m[pre + "b_V"][k] = m[pre + "W_O"][k, :] = True
                live = bool((head.W_V[:, k] != 0).any() or head.b_V[k] != 0) and bool((head.W_O[k, :] != 0).any())
                out.append(Atom(f"L{i}.H{h}.ov{k}", m, live))
        pre = f"blocks.{i}.mlp."
        for j in range(blk.mlp.b_in.shape[0]):
            m = {pre + n: _mask_like(params[pre + n]) for n in ("W_in", "b_in", "W_out")}
            m[pre + "W_in"][:, j] = m[pre + "b_in"][j] = m[pre + "W_out"][j, :] = True
            live = bool((blk.mlp.W_in[:, j] != 0).any()) and bool((blk.mlp.W_out[j, :] != 0).any())
            out.append(Atom(f"L{i}.u{j}", m, live))
    return out


def union(masks_list) -> dict:
    """The union of several {name: bool mask} dicts."""
    out: dict = {}
    for masks in masks_list:
        for name, m in masks.items():
            out[name] = out[name] | m if name in out else m.clone()
    return out


def atoms_of(component_masks: dict, all_atoms: list[Atom]) -> list[int]:
    """Indices of the atoms a component consists of.

    Raises:
        ValueError: the component is not a union of atoms (it owns part of an atom, or entries no atom owns).
    """
    inside = []
    for idx, atom in enumerate(all_atoms):
        hits = [bool((component_masks[n] & m).any()) if n in component_masks else False for n, m in atom.masks.items()]
        if not any(hits):
            continue
        full = all(bool((component_masks[n] | ~m).all()) if n in component_masks else False
                   for n, m in atom.masks.items())
        if not full:
            raise ValueError(f"the component owns part of atom {atom.name} only")
        inside.append(idx)
    covered = union(all_atoms[i].masks for i in inside)
    for n, m in component_masks.items():
        if bool((m & ~covered.get(n, _mask_like(m))).any()):
            raise ValueError(f"the component owns entries of {n} that belong to no atom")
    return inside


@dataclasses.dataclass
class Control:
    """One random control: the removed masks and how it was drawn.

    Attributes:
        masks: parameter name -> bool tensor (True = removed).
        atoms: names of the removed atoms.
        num_removed, num_nonzero: entries removed, of which nonzero.
        overlap: share of its atoms that the component owns.
        kink_margin: smallest |pre-activation| of a unit that still matters (inf: none).
        tries: draws needed to get kink_margin >= tol (the best draw is kept, and flagged, if none did).
    """

    masks: dict
    atoms: list
    num_removed: int
    num_nonzero: int
    overlap: float
    kink_margin: float
    tries: int


def draw_control(all_atoms: list[Atom], component: list[int], rng: np.random.Generator) -> list[int]:
    """Atom indices of one control: as many live and dead atoms as the component, uniformly from all atoms."""
    chosen = []
    for live in (True, False):
        need = sum(all_atoms[i].live == live for i in component)
        pool = [i for i, a in enumerate(all_atoms) if a.live == live]
        if need:
            chosen += [pool[j] for j in rng.choice(len(pool), need, replace=False)]
    return sorted(chosen)


def removed_units(model, removed: dict) -> dict:
    """Block index -> bool [M] of hidden units whose whole input (W_in column and b_in) is removed."""
    out = {}
    for i, blk in enumerate(model.blocks):
        m_in, m_b = removed.get(f"blocks.{i}.mlp.W_in"), removed.get(f"blocks.{i}.mlp.b_in")
        if m_in is None or m_b is None:
            continue
        dead = m_in.all(0) & m_b
        if dead.any():
            out[i] = dead
    return out


def switch_off_removed_units(model, removed: dict, margin: float) -> None:
    """In place: b_in = -margin for hidden units whose whole input is removed (off by the margin, not at the kink;
    with their input removed nothing sampled reaches them either way)."""
    with torch.no_grad():
        for i, dead in removed_units(model, removed).items():
            model.blocks[i].mlp.b_in[dead] = -float(margin)


@torch.no_grad()
def kink_margin(model, ids: torch.Tensor, removed: Optional[dict] = None) -> float:
    """Smallest |pre-activation| over real (non-pad) positions of the hidden units that still matter to the loss:
    some entry of their input (W_in column, b_in) and some entry of their output row (W_out) are sampled. Inf when
    there is none."""
    removed = removed or {}
    _, cache = model.run_with_cache(ids)
    real = ids != model.pad_id
    best = float("inf")
    for i, blk in enumerate(model.blocks):
        none = torch.zeros(blk.mlp.b_in.shape[0], dtype=torch.bool, device=ids.device)
        m_in, m_b = removed.get(f"blocks.{i}.mlp.W_in"), removed.get(f"blocks.{i}.mlp.b_in")
        m_out = removed.get(f"blocks.{i}.mlp.W_out")
        input_gone = (m_in.all(0) if m_in is not None else none) & (m_b if m_b is not None else none)
        output_gone = m_out.all(1) if m_out is not None else none
        live = ~input_gone & ~output_gone
        if not live.any():
            continue
        pre = cache[f"blocks.{i}.mlp.hook_pre"][real][:, live]
        if pre.numel():
            best = min(best, float(pre.abs().min()))
    return best


def count_removed(model, masks: dict) -> tuple[int, int]:
    """(entries, nonzero entries) that `masks` selects."""
    params = dict(model.named_parameters())
    total = int(sum(int(m.sum()) for m in masks.values()))
    nonzero = int(sum(int((params[k].detach()[m] != 0).sum()) for k, m in masks.items()))
    return total, nonzero


def remove(model, masks: dict, margin: float):
    """A copy of `model` with the masked entries zeroed and fully removed hidden units switched off by `margin`."""
    new = zero_ablate(model, masks)
    switch_off_removed_units(new, masks, margin)
    return new


def sample_controls(model, component_masks: dict, count: int, ids: torch.Tensor, margin: float, *, seed,
                    tol: float, max_tries: int = 30, which: Optional[int] = None) -> list[Control]:
    """`count` random controls of a component (module doc), each redrawn until every unit that still matters keeps
    at least `tol` from its kink on the real positions of `ids`.

    Seeds: control k draws from `numpy.random.SeedSequence(seed).spawn(count)[k]` (`seed` an int or a list of
    ints), so a control does not depend on the redraws of the others; `which=k` returns control k alone (the same
    one).
    """
    all_atoms = atoms(model)
    comp = atoms_of(component_masks, all_atoms)
    if not comp:
        raise ValueError("the component owns no atom")
    out = []
    children = np.random.SeedSequence(seed).spawn(count)
    for child in children if which is None else [children[which]]:
        rng = np.random.default_rng(child)
        best = None
        for tries in range(1, max_tries + 1):
            chosen = draw_control(all_atoms, comp, rng)
            masks = union(all_atoms[i].masks for i in chosen)
            gap = kink_margin(remove(model, masks, margin), ids, masks)
            if best is None or gap > best[2]:
                best = (chosen, masks, gap)
            if gap >= tol:
                break
        chosen, masks, gap = best
        total, nonzero = count_removed(model, masks)
        out.append(Control(masks, [all_atoms[i].name for i in chosen], total, nonzero,
                           sum(i in comp for i in chosen) / len(chosen), gap, tries))
    return out
