"""ONNX import: every supported op against onnxruntime on random inputs, over several opsets."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from certnn.errors import ModelImportError, UnsupportedOpError  # noqa: E402
from certnn.graph.from_onnx import onnx_to_model, supported_onnx_ops  # noqa: E402
from certnn.graph.loading import load_model  # noqa: E402

RNG = np.random.default_rng(0)
F = TensorProto.FLOAT


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def _model(nodes, in_shape, out_shape, inits=(), opset=13, inits_as_inputs=False, in_name="x", out_name="y"):
    inputs = [helper.make_tensor_value_info(in_name, F, in_shape)]
    if inits_as_inputs:
        inputs += [helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in inits]
    g = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(out_name, F, out_shape)],
                          initializer=list(inits))
    ir = 7 if opset <= 12 else 8
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)


def _w(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _parity(model, n=5, batch_fixed=False, tol=1e-5):
    """Compare the certnn IR with onnxruntime on random inputs; returns the imported model."""
    om = onnx_to_model(model.SerializeToString())
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = RNG.uniform(-2, 2, size=(n,) + om.graph.input_shape).astype(np.float32)
    if batch_fixed or not om.batched:
        want = np.concatenate([sess.run(None, {om.input_name: om.onnx_input(x[i:i + 1])})[0].reshape(1, -1)
                               for i in range(n)])
    else:
        want = sess.run(None, {om.input_name: x})[0].reshape(n, -1)
    got = om.graph.forward(torch.as_tensor(x, dtype=torch.float64)).reshape(n, -1).numpy()
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * (1 + np.abs(want).max()))
    return om


def _mlp_nodes(act="Relu"):
    inits = [_init("W1", _w(6, 4)), _init("b1", _w(6)), _init("W2", _w(3, 6)), _init("b2", _w(3))]
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1),
             helper.make_node(act, ["h"], ["a"]),
             helper.make_node("Gemm", ["a", "W2", "b2"], ["y"], transB=1, alpha=0.5, beta=2.0)]
    return nodes, inits


@pytest.mark.parametrize("opset", [8, 9, 11, 13, 17])
@pytest.mark.parametrize("act", ["Relu", "Sigmoid", "Tanh"])
def test_gemm_mlp_opsets(opset, act):
    nodes, inits = _mlp_nodes(act)
    _parity(_model(nodes, ["N", 4], ["N", 3], inits, opset=opset))


def test_initializers_listed_as_inputs_and_symbolic_batch():
    nodes, inits = _mlp_nodes()
    om = _parity(_model(nodes, [None, 4], [None, 3], inits, opset=9, inits_as_inputs=True))
    assert om.graph.input_shape == (4,)


def test_matmul_add_fused_and_sub_div_normalisation_acas_shape():
    # ACAS Xu style: (1, 1, 1, 5) input, Sub mean, Div std, Flatten, MatMul + Add
    inits = [_init("mean", _w(1, 1, 1, 5)), _init("std", np.abs(_w(5)) + 0.5), _init("W", _w(5, 7)),
             _init("b", _w(7)), _init("W2", _w(7, 5)), _init("b2", _w(5))]
    nodes = [helper.make_node("Sub", ["x", "mean"], ["s"]), helper.make_node("Div", ["s", "std"], ["d"]),
             helper.make_node("Flatten", ["d"], ["f"], axis=1), helper.make_node("MatMul", ["f", "W"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["m2"]), helper.make_node("Add", ["b2", "m2"], ["y"])]
    om = _parity(_model(nodes, [1, 1, 1, 5], [1, 5], inits, opset=8), batch_fixed=True)
    assert om.graph.input_shape == (1, 1, 5)
    kinds = [om.graph.nodes[n].op.kind for n in om.graph.order]
    assert kinds.count("linear") == 2 and all(om.graph.nodes[n].op.bias is not None
                                              for n in om.graph.order if om.graph.nodes[n].op.kind == "linear")


def test_matmul_constant_on_the_left_and_mul_by_constant():
    inits = [_init("W", _w(3, 4)), _init("k", _w(1, 5)), _init("c", np.float32(2.0))]
    nodes = [helper.make_node("MatMul", ["W", "x"], ["m"]), helper.make_node("Mul", ["m", "k"], ["p"]),
             helper.make_node("Mul", ["c", "p"], ["q"]), helper.make_node("Sub", ["c", "q"], ["n"]),
             helper.make_node("Neg", ["n"], ["y"])]
    _parity(_model(nodes, ["N", 4, 5], ["N", 3, 5], inits))


def test_add_of_two_branches_and_concat_transpose_reshape():
    inits = [_init("W", _w(4, 4)), _init("V", _w(4, 4)), _init("shape", np.array([0, -1], dtype=np.int64))]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["a"]), helper.make_node("MatMul", ["x", "V"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Sub", ["a", "s"], ["d"]),
             helper.make_node("Concat", ["s", "d"], ["c"], axis=-1),
             helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 1]),
             helper.make_node("Reshape", ["t", "shape"], ["y"])]
    _parity(_model(nodes, ["N", 3, 4], ["N", 24], inits))


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze_axes_attribute_and_input(opset):
    if opset >= 13:
        inits = [_init("ax", np.array([1], dtype=np.int64)), _init("ax2", np.array([2], dtype=np.int64))]
        nodes = [helper.make_node("Unsqueeze", ["x", "ax2"], ["u"]), helper.make_node("Relu", ["u"], ["r"]),
                 helper.make_node("Squeeze", ["r", "ax2"], ["s"]), helper.make_node("Unsqueeze", ["s", "ax"], ["y"])]
    else:
        inits = []
        nodes = [helper.make_node("Unsqueeze", ["x"], ["u"], axes=[2]), helper.make_node("Relu", ["u"], ["r"]),
                 helper.make_node("Squeeze", ["r"], ["s"], axes=[2]), helper.make_node("Unsqueeze", ["s"], ["y"], axes=[1])]
    _parity(_model(nodes, ["N", 3, 2], ["N", 1, 3, 2], inits, opset=opset))


def test_shape_gather_concat_reshape_chain_constant_folded():
    # the torch.onnx pattern x.view(x.size(0), -1)
    inits = [_init("zero", np.array(0, dtype=np.int64)), _init("minus1", np.array([-1], dtype=np.int64)),
             _init("W", _w(6, 2))]
    nodes = [helper.make_node("Shape", ["x"], ["sh"]), helper.make_node("Gather", ["sh", "zero"], ["b"], axis=0),
             helper.make_node("Unsqueeze", ["b"], ["bu"], axes=[0]),
             helper.make_node("Concat", ["bu", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["y"])]
    _parity(_model(nodes, ["N", 2, 3], ["N", 2], inits, opset=11))


def test_constant_identity_dropout_removed_and_clip_leaky():
    c = helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(_w(4), "k"))
    nodes = [c, helper.make_node("Add", ["x", "k"], ["a"]), helper.make_node("Identity", ["a"], ["i"]),
             helper.make_node("Dropout", ["i"], ["d"], ratio=0.5),
             helper.make_node("Clip", ["d"], ["cl"], min=-0.5, max=0.7),
             helper.make_node("LeakyRelu", ["cl"], ["y"], alpha=0.1)]
    om = _parity(_model(nodes, ["N", 4], ["N", 4], [], opset=10))
    assert not any(om.graph.nodes[n].op.kind in ("identity", "dropout") for n in om.graph.order)


def test_clip_opset11_inputs_and_relu_form():
    inits = [_init("lo", np.float32(0.0))]
    nodes = [helper.make_node("Clip", ["x", "lo"], ["y"])]
    om = _parity(_model(nodes, ["N", 4], ["N", 4], inits, opset=12))
    assert om.graph.nodes[om.graph.output_name].op.kind == "relu"


def test_batchnorm_slice_gather():
    C = 3
    inits = [_init("g", _w(C)), _init("b", _w(C)), _init("m", _w(C)), _init("v", np.abs(_w(C)) + 0.1),
             _init("st", np.array([1], dtype=np.int64)), _init("en", np.array([4], dtype=np.int64)),
             _init("axs", np.array([2], dtype=np.int64)), _init("i1", np.array(1, dtype=np.int64))]
    nodes = [helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["bn"], epsilon=1e-3),
             helper.make_node("Slice", ["bn", "st", "en", "axs"], ["sl"]),
             helper.make_node("Gather", ["sl", "i1"], ["y"], axis=1)]
    _parity(_model(nodes, ["N", C, 5], ["N", 3], inits, opset=13))


def test_rank1_input_without_batch_dimension():
    inits = [_init("W", _w(4, 3)), _init("b", _w(3))]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
    om = _parity(_model(nodes, [4], [3], inits))
    assert not om.batched and om.graph.input_shape == (4,)


def test_conv_bn_pool_against_onnxruntime():
    pytest.importorskip("certnn.ops.conv")
    pytest.importorskip("certnn.ops.pooling")
    inits = [_init("W", _w(4, 2, 3, 3)), _init("B", _w(4)), _init("g", _w(4)), _init("bb", _w(4)),
             _init("m", _w(4)), _init("v", np.abs(_w(4)) + 0.1), _init("W2", _w(3, 4, 2, 2))]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], strides=[1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "bb", "m", "v"], ["bn"]),
             helper.make_node("Relu", ["bn"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["mp", "W2"], ["c2"], pads=[0, 0, 1, 1]),
             helper.make_node("AveragePool", ["c2"], ["ap"], kernel_shape=[2, 2], strides=[1, 1]),
             helper.make_node("GlobalAveragePool", ["ap"], ["gp"]),
             helper.make_node("Flatten", ["gp"], ["y"])]
    _parity(_model(nodes, ["N", 2, 8, 8], ["N", 3], inits, opset=11))


def test_unsupported_node_names_op_position_and_supported_list():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Softsign", ["r"], ["y"], name="weird")]
    with pytest.raises(UnsupportedOpError) as ei:
        onnx_to_model(_model(nodes, ["N", 4], ["N", 4]).SerializeToString())
    msg = str(ei.value)
    assert "Softsign" in msg and "node 1" in msg and "weird" in msg
    for op in ("Gemm", "Relu", "Conv", "Reshape"):
        assert op in msg
    assert "Gemm" in supported_onnx_ops()


def test_products_of_two_layer_outputs():
    """x * relu(x) imports as the product op (McCormick planes) and its bounds are sound; x / y and products
    that broadcast are refused."""
    from certnn.certify.bounds import bounds_for_spec, make_spec
    from certnn.testing import check_bounds_contain, sample_ball

    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["x", "r"], ["y"])]
    om = _parity(_model(nodes, ["N", 4], ["N", 4]))
    x = torch.rand(3, 4, dtype=torch.float64) * 2 - 1
    spec = make_spec(om.graph, x, 0.4, "inf")
    for method in ("ibp", "crown", "certrnn"):
        lo, hi, _ = bounds_for_spec(om.graph, spec, method)
        assert check_bounds_contain(om.graph.forward, sample_ball(spec, 90), lo, hi) <= 1e-9
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Div", ["x", "r"], ["y"])]
    with pytest.raises(UnsupportedOpError, match="Div of two layer outputs"):
        onnx_to_model(_model(nodes, ["N", 4], ["N", 4]).SerializeToString())
    inits = [_init("W", _w(4, 1))]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Mul", ["x", "m"], ["y"])]
    with pytest.raises(UnsupportedOpError, match="same shape"):
        onnx_to_model(_model(nodes, ["N", 4], ["N", 4], inits).SerializeToString())


def test_concat_with_constants_split_and_identity_outputs():
    inits = [_init("c", np.array([[0.5, -2.0]], dtype=np.float32)), _init("sp", np.array([1, 3], dtype=np.int64))]
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Concat", ["r", "c"], ["y"], axis=1)]
    om = _parity(_model(nodes, [1, 4], [1, 6], inits[:1]), batch_fixed=True)  # ONNX needs the batch of 1
    assert om.graph.output_shape == (6,)
    nodes = [helper.make_node("Split", ["x", "sp"], ["a", "b"], axis=1), helper.make_node("Relu", ["a"], ["ra"]),
             helper.make_node("Concat", ["b", "ra"], ["y"], axis=1)]
    _parity(_model(nodes, ["N", 4], ["N", 4], inits[1:]))
    nodes = [helper.make_node("Split", ["x"], ["a", "b"], axis=1, split=[2, 2]), helper.make_node("Sub", ["a", "b"], ["y"])]
    _parity(_model(nodes, ["N", 4], ["N", 2], opset=11))
    # a model whose output is its input (up to layout) is a model
    om = _parity(_model([helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0])], [1, 3], [3, 1]),
                 batch_fixed=True)
    assert om.graph.output_shape == (3,) and om.output_batch_axis == 1


def test_malformed_files(tmp_path):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"this is not a protobuf \x00\x01\x02 at all")
    with pytest.raises(ModelImportError):
        load_model(str(p))
    g = tmp_path / "bad.onnx.gz"
    g.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(ModelImportError):
        load_model(str(g))
    with pytest.raises(ModelImportError, match="not found"):
        load_model(str(tmp_path / "missing.onnx"))


def test_load_model_reads_onnx_and_gz(tmp_path):
    nodes, inits = _mlp_nodes()
    raw = _model(nodes, ["N", 4], ["N", 3], inits).SerializeToString()
    (tmp_path / "m.onnx").write_bytes(raw)
    (tmp_path / "m.onnx.gz").write_bytes(gzip.compress(raw))
    a, b = load_model(str(tmp_path / "m.onnx")), load_model(str(tmp_path / "m.onnx.gz"))
    x = torch.rand(3, 4, dtype=torch.float64)
    assert torch.equal(a(x), b(x))


def test_load_model_truncated_gz_is_a_clear_error(tmp_path):
    nodes, inits = _mlp_nodes()
    raw = gzip.compress(_model(nodes, ["N", 4], ["N", 3], inits).SerializeToString())
    path = tmp_path / "m.onnx.gz"
    path.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ModelImportError, match="m.onnx.gz: corrupt gzip data"):
        load_model(str(path))


def test_two_real_inputs_rejected():
    g = helper.make_graph([helper.make_node("Add", ["x", "z"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", F, ["N", 2]),
                           helper.make_tensor_value_info("z", F, ["N", 2])],
                          [helper.make_tensor_value_info("y", F, ["N", 2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(ModelImportError, match="exactly one"):
        onnx_to_model(m.SerializeToString())


def test_slice_opset9_attributes_and_pad_opset_versions():
    pytest.importorskip("certnn.ops.conv")
    nodes = [helper.make_node("Slice", ["x"], ["s"], starts=[1, 0], ends=[3, 100], axes=[1, 2]),
             helper.make_node("Pad", ["s"], ["y"], pads=[0, 0, 1, 0, 0, 1, 2, 0], mode="constant")]
    _parity(_model(nodes, ["N", 2, 4, 5], ["N", 3, 3, 7], opset=9))
    inits = [_init("p", np.array([0, 0, 1, 2, 0, 0, 0, 1], dtype=np.int64))]
    nodes = [helper.make_node("Pad", ["x", "p"], ["y"])]
    _parity(_model(nodes, ["N", 2, 4, 5], ["N", 2, 4, 8], inits, opset=13))


@pytest.mark.parametrize("case", ["same_upper", "groups_dilation", "ceil_avg_excl"])
def test_conv_and_pool_variants(case):
    pytest.importorskip("certnn.ops.conv")
    pytest.importorskip("certnn.ops.pooling")
    if case == "same_upper":
        inits = [_init("W", _w(3, 2, 4, 4))]
        nodes = [helper.make_node("Conv", ["x", "W"], ["c"], auto_pad="SAME_UPPER", strides=[2, 2]),
                 helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]
        out = ["N", 3, 2, 2]
    elif case == "groups_dilation":
        inits = [_init("W", _w(4, 1, 3, 3)), _init("B", _w(4))]
        nodes = [helper.make_node("Conv", ["x", "W", "B"], ["y"], group=2, dilations=[2, 2], pads=[2, 2, 2, 2])]
        out = ["N", 4, 7, 7]
    else:
        inits = [_init("W", _w(2, 2, 1, 1))]
        nodes = [helper.make_node("Conv", ["x", "W"], ["c"]),
                 helper.make_node("AveragePool", ["c"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                  pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=0)]
        out = ["N", 2, 4, 4]
    _parity(_model(nodes, ["N", 2, 7, 7], out, inits, opset=11))


@pytest.mark.parametrize("with_conv", [False, True])
def test_bounds_of_imported_models_contain_onnxruntime_outputs(with_conv):
    """Network level: CROWN/IBP bounds of the imported graph contain onnxruntime's outputs on uniform,
    corner-heavy and vertex samples of the box (float32 tolerance)."""
    from certnn.certify.bounds import bounds_for_spec
    from certnn.specs.lp import LpBall

    if with_conv:
        pytest.importorskip("certnn.ops.conv")
        inits = [_init("W", _w(3, 1, 3, 3)), _init("B", _w(3)), _init("V", _w(27, 4)), _init("c", _w(4)),
                 _init("mu", np.float32(0.5))]
        nodes = [helper.make_node("Sub", ["x", "mu"], ["s"]), helper.make_node("Conv", ["s", "W", "B"], ["cv"]),
                 helper.make_node("Relu", ["cv"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
                 helper.make_node("MatMul", ["f", "V"], ["m"]), helper.make_node("Add", ["m", "c"], ["y"])]
        model = _model(nodes, ["N", 1, 5, 5], ["N", 4], inits, opset=11)
    else:
        inits = [_init("mean", _w(1, 1, 1, 3)), _init("W", _w(3, 8)), _init("b", _w(8)), _init("W2", _w(8, 2))]
        nodes = [helper.make_node("Sub", ["x", "mean"], ["s"]), helper.make_node("Flatten", ["s"], ["f"]),
                 helper.make_node("MatMul", ["f", "W"], ["m"]), helper.make_node("Add", ["m", "b"], ["h"]),
                 helper.make_node("Tanh", ["h"], ["a"]), helper.make_node("MatMul", ["a", "W2"], ["y"])]
        model = _model(nodes, [1, 1, 1, 3], [1, 2], inits, opset=8)
    om = onnx_to_model(model.SerializeToString())
    shape = om.graph.input_shape
    g = torch.Generator().manual_seed(0)
    center = torch.rand((1,) + shape, generator=g, dtype=torch.float64)
    spec = LpBall.make(center, 0.2, "inf")
    box = spec.box()
    n = 300
    u = torch.rand((n,) + shape, generator=g, dtype=torch.float64)
    beta = torch.distributions.Beta(0.5, 0.5).sample((n,) + shape).double()
    vert = torch.randint(0, 2, (n,) + shape, generator=g).double()
    t = torch.cat([u, beta, vert])
    pts = (box.lower + (box.upper - box.lower) * t).numpy()
    want = om.run_onnxruntime(pts.astype(np.float32))
    for method in ("ibp", "crown"):
        lo, hi, _ = bounds_for_spec(om.graph, spec, method)
        tol = 1e-4 * (1 + np.abs(want).max())
        assert (want >= lo.numpy() - tol).all() and (want <= hi.numpy() + tol).all(), method


@pytest.mark.parametrize("opset", [9, 17])
def test_atan_cast_and_batchnorm_on_flat_input(opset):
    C = 4
    inits = [_init("g", _w(C)), _init("b", _w(C)), _init("m", _w(C)), _init("v", np.abs(_w(C)) + 0.1)]
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=TensorProto.FLOAT),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"]),
             helper.make_node("Atan", ["bn"], ["y"])]
    _parity(_model(nodes, ["N", C], ["N", C], inits, opset=opset))


def test_reshape_to_rank1_drops_a_batch_of_one():
    inits = [_init("s", np.array([-1], dtype=np.int64)), _init("W", _w(6, 3))]
    nodes = [helper.make_node("Reshape", ["x", "s"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["y"])]
    om = _parity(_model(nodes, [1, 2, 3], [3], inits), batch_fixed=True)
    assert om.graph.input_shape == (2, 3) and om.graph.output_shape == (3,)
