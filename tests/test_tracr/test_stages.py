"""Unit tests per compiler stage: craft IR, chamber blocks, graph, value sets, allocation, assembly, model."""

import networkx as nx
import numpy as np
import pytest

from tracr.compiler import basis_inference, compiling, craft_graph_to_model as c2m, lib, nodes, rasp_to_graph
from tracr.craft import bases, transformers, vectorspace_fns as vf
from tracr.craft.chamber import categorical_mlp, numerical_mlp
from tracr.rasp import rasp
from tracr.transformer import encoder

BD = bases.BasisDirection
Space = bases.VectorSpaceWithBasis


def test_basis_order_is_total_for_mixed_types():
    dirs = [BD("x", "b"), BD("x", 2), BD("x", None), BD("x", 1.5), BD("x", (1, 2)), BD("a")]
    s = Space(dirs)
    assert [str(d) for d in s.basis] == ["a", "x", "x:1.5", "x:2", "x:b", "x:(1, 2)"]


def test_direct_sum_rejects_overlap_and_join_unions():
    a, b = Space.from_values("x", [1, 2]), Space.from_values("x", [2, 3])
    with pytest.raises(ValueError):
        bases.direct_sum(a, b)
    assert bases.join_vector_spaces(a, b).num_dims == 3


def test_projection_and_combine_in_parallel():
    a, b = Space.from_names(["p", "q"]), Space.from_names(["q", "r"])
    assert np.array_equal(a.projection_to(b), [[0, 0], [1, 0]])
    f = vf.Linear(a, a, np.eye(2))
    g = vf.Linear(b, b, 2 * np.eye(2))
    h = vf.combine_in_parallel([f, g])
    assert [str(d) for d in h.input_space.basis] == ["p", "q", "r"]
    assert np.array_equal(h.matrix, np.diag([1, 3, 2]))


def test_mlps_with_shared_hidden_units_cannot_merge():
    s, hidden = Space.from_names(["x"]), Space.from_names(["h"])
    m = transformers.MLP(vf.Linear(s, hidden, np.ones((1, 1))), vf.Linear(hidden, s, np.ones((1, 1))))
    with pytest.raises(ValueError):
        transformers.MLP.combine_in_parallel([m, m])


def test_categorical_mlp_is_a_lookup_table():
    inp, out = Space.from_values("x", [1, 2, 3]), Space.from_values("y", [1, 4, 9])
    mlp = categorical_mlp.map_categorical_mlp(inp, out, lambda v: v * v, "_h", BD("one"))
    res = bases.join_vector_spaces(inp, out)
    x = np.stack([res.vector(BD("x", v)) for v in (1, 2, 3)])
    y = mlp.forward(x, res)
    assert [out.basis[i].value for i in np.argmax(bases.embed(y, res, out), axis=1)] == [1, 4, 9]


@pytest.mark.parametrize("f", [lambda x: x, lambda x: x ** 2, lambda x: x ** 3, lambda x: -x])
def test_discretising_mlp_exact_on_its_value_set(f):
    values = [-2, -1, 0, 1, 2, 3]
    one, bos = BD("one"), BD("tokens", "bos")
    inp, out = Space([BD("x")]), Space([BD("y")])
    mlp = numerical_mlp.discretising_mlp(inp, out, values, f, "_h", one, bos, slope=100)
    res = bases.join_vector_spaces(inp, out, Space([one, bos]))
    x = np.stack([v * res.vector(BD("x")) + res.vector(one) for v in values])
    np.testing.assert_allclose(bases.embed(mlp.forward(x, res), res, out)[:, 0], [f(v) for v in values],
                               atol=1e-12)
    at_bos = mlp.forward((res.vector(one) + res.vector(bos))[None], res)
    np.testing.assert_allclose(at_bos, 0, atol=1e-12)  # writes nothing at BOS


def test_linear_sequence_map_is_exact():
    x, y, out = Space([BD("x")]), Space([BD("y")]), Space([BD("z")])
    mlp = numerical_mlp.linear_sequence_map_numerical_mlp(x, y, out, -2, -0.5, "_h", BD("one"), BD("tokens", "bos"),
                                                          [4], [1])
    res = bases.join_vector_spaces(x, y, out)
    v = 4 * res.vector(BD("x")) + 1 * res.vector(BD("y"))
    assert bases.embed(mlp.forward(v[None], res), res, out)[0, 0] == pytest.approx(-8.5)


def test_graph_edges_point_from_child_to_parent():
    agg = rasp.Aggregate(rasp.Select(rasp.indices, rasp.tokens, rasp.Comparison.EQ), rasp.tokens)
    g = rasp_to_graph.extract_rasp_graph(agg)
    sel = agg.selector.label
    assert set(g.graph.edges) == {("indices", sel), ("tokens", sel), (sel, agg.label), ("tokens", agg.label)}
    assert g.sink[nodes.ID] == agg.label and {s[nodes.ID] for s in g.sources} == {"tokens", "indices"}


def _values(program, vocab, msl):
    g = rasp_to_graph.extract_rasp_graph(program)
    basis_inference.infer_bases(g.graph, g.sink, vocab, msl)
    return g.graph.nodes[program.label][nodes.VALUE_SET]


def test_value_sets():
    assert _values(rasp.tokens + 1, {1, 2, 3}, 3) == {2, 3, 4}
    x = rasp.tokens + 1
    assert _values(x + x + rasp.indices, {0, 1}, 2) == {2, 3, 4, 5}
    assert _values(lib.make_hist(), {"a"}, 3) == {0, 1, 2, 3}
    frac = lib.make_frac_prevs(rasp.tokens == "a")
    assert _values(frac, {"a", "b"}, 3) == {0, 1, 1 / 2, 1 / 3, 2 / 3}  # all k/n, not just {v/n} (bug D)


def test_layer_allocation_on_tracr_reference_dag():
    kinds = [None, c2m.ATTN, c2m.MLP, c2m.ATTN, c2m.MLP, None, None, c2m.MLP, c2m.MLP, c2m.ATTN, c2m.ATTN]
    g = nx.DiGraph([(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (6, 7), (7, 2), (7, 8), (8, 3), (8, 10), (10, 9), (9, 4)])
    slots = c2m.allocate_layers(g, dict(enumerate(kinds)), {n: 1 for n in g.nodes})
    assert [slots.get(n, -1) for n in range(11)] == [-1, 0, 3, 4, 7, -1, -1, 1, 3, 6, 4]


def test_layer_allocation_on_alternating_chain():
    g = nx.DiGraph([(0, 1), (1, 2), (2, 3), (3, 4)])
    kinds = {0: None, 1: c2m.ATTN, 2: c2m.MLP, 3: c2m.ATTN, 4: c2m.MLP}
    assert c2m.allocate_layers(g, kinds, {n: 1 for n in g.nodes}) == {1: 0, 2: 1, 3: 2, 4: 3}


def test_reverse_layer_structure_matches_tracr():
    m = compiling.compile_rasp_to_model(lib.make_reverse(rasp.tokens), set("abcd"), 5)
    kinds = [(c.layer, c.kind) for c in m.components]
    assert m.model_config.num_layers == 4
    assert kinds == [(0, "attn"), (0, "mlp"), (1, "mlp"), (2, "mlp"), (3, "attn")]


def test_embeddings_and_param_tree():
    m = compiling.compile_rasp_to_model(lib.make_reverse(rasp.tokens), {1, 2, 3}, 5)
    D = len(m.residual_labels)
    directions = _directions(m)  # residual labels follow the total order of their basis directions
    assert [str(d) for d in sorted(directions, key=BD.sort_key)] == m.residual_labels
    assert m.params["token_embed"]["embeddings"].shape == (5, D)
    pos = m.params["pos_embed"]["embeddings"]
    assert pos.shape == (6, D) and not pos[0].any() and pos[1, m.residual_labels.index("indices:0")] == 1
    assert m.input_encoder.encoding_map == {1: 0, 2: 1, 3: 2, "compiler_bos": 3, "compiler_pad": 4}
    bos_row = m.params["token_embed"]["embeddings"][3]
    assert {m.residual_labels[i] for i in np.flatnonzero(bos_row)} == {"one", "tokens:compiler_bos"}
    cfg = m.model_config
    for i in range(cfg.num_layers):
        p = f"transformer/layer_{i}"
        assert m.params[f"{p}/attn/query"]["w"].shape == (D, cfg.num_heads * cfg.key_size)
        assert m.params[f"{p}/attn/linear"]["w"].shape == (cfg.num_heads * cfg.key_size, D)
        assert m.params[f"{p}/mlp/linear_1"]["w"].shape == (D, cfg.mlp_hidden_size)
        assert m.params[f"{p}/mlp/linear_2"]["b"].shape == (D,)
    assert not cfg.layer_norm


def test_encoder_round_trip_and_order():
    enc = encoder.CategoricalEncoder(Space.from_values("tokens", ["b", "a", "BOS"]), enforce_bos=True,
                                     bos_token="BOS", max_seq_len=3)
    assert enc.encoding_map == {"BOS": 0, "a": 1, "b": 2}
    assert enc.decode(enc.encode(["BOS", "a", "b"])) == ["BOS", "a", "b"]


@pytest.mark.parametrize("name", ["reverse", "sort_freq", "pair_balance", "shuffle_dyck2", "count_less_freq"])
def test_craft_model_equals_haiku_model(name):
    """The numpy craft forward pass (the construction's ground truth) equals the assembled Haiku model."""
    progs = {"reverse": (lambda: lib.make_reverse(rasp.tokens), set("abc"), ["a", "b", "c", "a"]),
             "sort_freq": (lambda: lib.make_sort_freq(5), {1, 2, 3}, [2, 3, 2, 1]),
             "pair_balance": (lambda: lib.make_pair_balance(rasp.tokens, "(", ")"), set("()"), list("(()")),
             "shuffle_dyck2": (lib.make_shuffle_dyck2, set("(){}"), list("({)}")),
             "count_less_freq": (lambda: lib.make_count_less_freq(2), set("ab"), list("aab"))}
    factory, vocab, xs = progs[name]
    m = compiling.compile_rasp_to_model(factory(), vocab, 5, compiler_bos="BOS")
    out = m.apply(["BOS"] + xs)
    space = Space(_directions(m))  # the full residual space, in label order
    x = np.asarray(out.input_embeddings[0])
    for i in sorted(m.craft_model.half_layers):
        x = x + m.craft_model.half_layers[i].forward(x, space)
    np.testing.assert_allclose(x, np.asarray(out.transformer_output[0]), atol=1e-9)


def _directions(m):
    """Residual directions in label order, recovered from the craft spaces (labels alone lose value types)."""
    by_label = {}
    spaces = [b.residual_space for b in m.craft_model.half_layers.values()]
    for s in spaces + [Space(m.input_encoder.basis), Space(m.output_encoder.basis), Space([BD("one")])]:
        for d in s.basis:
            by_label[str(d)] = d
    for lbl in m.residual_labels:
        if lbl.startswith("indices:"):
            by_label.setdefault(lbl, BD("indices", int(lbl.split(":")[1])))
    return [by_label[lbl] for lbl in m.residual_labels]
