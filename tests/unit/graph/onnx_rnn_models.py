"""Hand-built ONNX RNN / LSTM / GRU models (onnx.helper) covering what the ONNX specification allows and
torch.onnx.export does not produce: time-major inputs with a symbolic sequence length (as MATLAB exports
them), layout=1, sequence_lens, initial states as initializers, Constant nodes or computed from the input,
peepholes, clip, input_forget, linear_before_reset=0 and non-default activations."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

G = {"RNN": 1, "LSTM": 4, "GRU": 3}


def make_rnn_model(kind="LSTM", layout=0, direction="forward", H=4, I=3, T=5, sym_T=True, batch="N", acts=None, alpha=None,
         beta=None, clip=None, peep=False, input_forget=0, lbr=None, h0=None, c0=None, seq=None, use="Y_h",
         K=2, seed=0, opset=14):
    rng = np.random.default_rng(seed)
    D = 2 if direction == "bidirectional" else 1
    g = G[kind]
    W = rng.standard_normal((D, g * H, I)).astype(np.float32)
    R = rng.standard_normal((D, g * H, H)).astype(np.float32) * 0.7
    B = rng.standard_normal((D, 2 * g * H)).astype(np.float32) * 0.5
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R"), numpy_helper.from_array(B, "B")]
    ins = ["x", "W", "R", "B"]
    tdim = "T" if sym_T else T
    x_shape = [tdim, batch, I] if layout == 0 else [batch, tdim, I]
    if seq is not None:
        inits.append(numpy_helper.from_array(np.array([seq], dtype=np.int32), "seq"))
        ins.append("seq")
    else:
        ins.append("")
    nodes = []
    def state(v, name):
        if v is None:
            ins.append("")
        elif v == "zeros" or v == "rand":
            a = (np.zeros if v == "zeros" else lambda s: rng.standard_normal(s).astype(np.float32) * 0.5)((D, 1, H) if layout == 0 else (1, D, H))
            a = np.asarray(a, dtype=np.float32)
            inits.append(numpy_helper.from_array(a, name)); ins.append(name)
        elif v == "const":
            a = (rng.standard_normal((D, 1, H) if layout == 0 else (1, D, H)) * 0.5).astype(np.float32)
            nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(a, name + "_v")))
            ins.append(name)
        elif v == "computed":  # from the input's first step: tanh(x_0 @ V)
            V = rng.standard_normal((I, D * H)).astype(np.float32) * 0.3
            inits.append(numpy_helper.from_array(V, name + "_V"))
            idx = numpy_helper.from_array(np.array(0, dtype=np.int64), name + "_i")
            inits.append(idx)
            ax = 0 if layout == 0 else 1
            nodes.append(helper.make_node("Gather", ["x", name + "_i"], [name + "_x0"], axis=ax))  # [B, I]
            nodes.append(helper.make_node("MatMul", [name + "_x0", name + "_V"], [name + "_m"]))  # [B, D*H]
            nodes.append(helper.make_node("Tanh", [name + "_m"], [name + "_t"]))
            shp = numpy_helper.from_array(np.array([0, D, H] if layout == 1 else [-1, D, H], dtype=np.int64), name + "_s")
            inits.append(shp)
            if layout == 1:
                nodes.append(helper.make_node("Reshape", [name + "_t", name + "_s"], [name]))  # [B, D, H]
            else:
                nodes.append(helper.make_node("Reshape", [name + "_t", name + "_s"], [name + "_r"]))  # [B, D, H]
                nodes.append(helper.make_node("Transpose", [name + "_r"], [name], perm=[1, 0, 2]))  # [D, B, H]
    state(h0, "h0")
    if kind == "LSTM":
        state(c0, "c0")
        if peep:
            inits.append(numpy_helper.from_array((rng.standard_normal((D, 3 * H)) * 0.5).astype(np.float32), "P"))
            ins.append("P")
    while ins and ins[-1] == "":
        ins.pop()
    attrs = {"hidden_size": H, "direction": direction}
    if layout:
        attrs["layout"] = 1
    if acts: attrs["activations"] = acts
    if alpha: attrs["activation_alpha"] = alpha
    if beta: attrs["activation_beta"] = beta
    if clip: attrs["clip"] = clip
    if input_forget: attrs["input_forget"] = 1
    if lbr is not None: attrs["linear_before_reset"] = lbr
    outs = ["Y", "Y_h"] + (["Y_c"] if kind == "LSTM" else [])
    nodes.append(helper.make_node(kind, ins, outs, **attrs))
    Wf = rng.standard_normal((D * H, K)).astype(np.float32)
    inits.append(numpy_helper.from_array(Wf, "Wf"))
    if use in ("Y_h", "Y_c"):
        # [D, B, H] (layout 0) -> [B, D*H]
        if layout == 0:
            nodes.append(helper.make_node("Transpose", [use], ["hT"], perm=[1, 0, 2]))
        else:
            nodes.append(helper.make_node("Identity", [use], ["hT"]))
        inits.append(numpy_helper.from_array(np.array([0, D * H], dtype=np.int64), "shp"))
        nodes.append(helper.make_node("Reshape", ["hT", "shp"], ["hf"]))
    elif use == "Y_last":
        # Y [T, D, B, H] -> last step [D, B, H] -> [B, D*H]
        if layout == 0:
            nodes.append(helper.make_node("Gather", ["Y", "m1"], ["yl"], axis=0))  # [D, B, H]
            nodes.append(helper.make_node("Transpose", ["yl"], ["hT"], perm=[1, 0, 2]))
        else:
            nodes.append(helper.make_node("Gather", ["Y", "m1"], ["hT"], axis=1))  # [B, D, H]
        inits.append(numpy_helper.from_array(np.array(-1, dtype=np.int64), "m1"))
        inits.append(numpy_helper.from_array(np.array([0, D * H], dtype=np.int64), "shp"))
        nodes.append(helper.make_node("Reshape", ["hT", "shp"], ["hf"]))
    elif use == "Y_mean":
        # mean over time via ReduceMean is unsupported; use Squeeze of D then Transpose + Flatten for fixed T
        if layout == 0:
            nodes.append(helper.make_node("Transpose", ["Y"], ["yt"], perm=[2, 0, 1, 3]))  # [B, T, D, H]
        else:
            nodes.append(helper.make_node("Identity", ["Y"], ["yt"]))
        nodes.append(helper.make_node("Flatten", ["yt"], ["hf"], axis=1))  # [B, T*D*H]
        Wf = rng.standard_normal((T * D * H, K)).astype(np.float32)
        inits[-1] = numpy_helper.from_array(Wf, "Wf")
    nodes.append(helper.make_node("MatMul", ["hf", "Wf"], ["y"]))
    graph = helper.make_graph(nodes, "rnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, K])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(m)
    return m
