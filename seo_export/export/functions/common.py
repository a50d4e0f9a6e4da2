"""Pieces shared by the seo FunctionProto bodies: names, overloads, text fragments, parsing.

The bodies are written in ONNX's textual syntax and parsed with ``onnx.parser``. Every body
casts its inputs to float32, computes there and casts the result back to ``q``'s type with
``CastLike``, so an FP16/BF16 graph keeps softmax, mask arithmetic and the pseudo-inverse in
float32. Masks are applied with boolean ``Where``; a row with nothing admissible gives zeros.
"""

from __future__ import annotations

import onnx
import onnx.defs
import onnx.parser

DOMAIN = "seo"
OP_VERSION = 1
LOCAL_WINDOW = "LocalWindowAttention"
LANDMARK = "LandmarkAttention"
OP_TYPES = (LOCAL_WINDOW, LANDMARK)

#: The formal inputs every variant declares (the last two are optional at the node).
INPUTS = ("q", "k", "v", "key_mask", "rel_bias")
OUTPUTS = ("out",)
#: Attributes each op declares, in the order nodes carry them.
ATTRIBUTES = {
    LOCAL_WINDOW: ("window_left", "window_right", "scale", "plugin_namespace", "plugin_version"),
    LANDMARK: ("num_landmarks", "pinv_iterations", "scale", "plugin_namespace", "plugin_version"),
}
#: Oldest default-domain opset the bodies are written for (ReduceMax/ReduceSum take axes as inputs).
MIN_OPSET = 18

_OVERLOADS = {
    (True, True): "",
    (True, False): "no_bias",
    (False, True): "no_mask",
    (False, False): "no_mask_no_bias",
}
#: Both inputs present, rel_bias the exporter's zero [H, 1] stand-in: the body reads only its type
#: (a per-head constant cannot change a softmax). onnx-graphsurgeon's cleanup, which onnxslim runs,
#: deletes function inputs a body never reads without fixing the nodes, so present inputs are read.
ZERO_BIAS = "zero_bias"
OVERLOADS = (*_OVERLOADS.values(), ZERO_BIAS)


def overload_for(has_mask: bool, has_bias: bool, zero_bias: bool = False) -> str:
    """FunctionProto/NodeProto overload for a node with the given optional inputs present;
    ``zero_bias``: the bias is the zero stand-in (ignored without a mask: the full body is exact too)."""
    if zero_bias and has_mask and has_bias:
        return ZERO_BIAS
    return _OVERLOADS[(bool(has_mask), bool(has_bias))]


def presence_of(overload: str) -> tuple[bool, bool]:
    """(has_mask, has_bias) for an overload name; ValueError for an unknown one."""
    if overload == ZERO_BIAS:
        return True, True
    for presence, name in _OVERLOADS.items():
        if name == overload:
            return presence
    raise ValueError(f"unknown seo function overload {overload!r}; expected one of {list(OVERLOADS)}")


def adds_bias(overload: str) -> bool:
    """Whether the body adds rel_bias to the logits (present and not the zero stand-in)."""
    return presence_of(overload)[1] and overload != ZERO_BIAS


def type_source(overload: str) -> str:
    """The input whose type the output takes: rel_bias where nothing else reads it, else q."""
    return "rel_bias" if overload == ZERO_BIAS else "q"


def cast_output(overload: str) -> str:
    """The body's last line: back to the inputs' type."""
    return f"""
    out = CastLike (out_f, {type_source(overload)})
"""


def check_opset(opset: int) -> int:
    opset = int(opset)
    latest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= latest:
        raise ValueError(
            f"the seo function bodies need a default-domain opset in [{MIN_OPSET}, {latest}], got {opset}"
        )
    return opset


def header(op_type: str, opset: int) -> str:
    attrs = ", ".join(ATTRIBUTES[op_type])
    return (
        f'<domain: "{DOMAIN}", opset_import: ["" : {opset}]>\n'
        f"{op_type} <{attrs}> ({', '.join(INPUTS)}) => ({', '.join(OUTPUTS)})\n"
    )


# Constants every body uses; prefixed "c_" so fragments never collide with them. Literals are typed
# tensors, not value_float/value_int: onnx-graphsurgeon 0.6.1's constant folding (polygraphy sanitize,
# onnxslim) turns a value_float into float64. References such as @scale it leaves alone.
CONSTANTS = """
    c_i0 = Constant <value: tensor = int64 {0}> ()
    c_i1 = Constant <value: tensor = int64 {1}> ()
    c_i2 = Constant <value: tensor = int64 {2}> ()
    c_f0 = Constant <value: tensor = float {0.0}> ()
    c_f1 = Constant <value: tensor = float {1.0}> ()
    c_ninf = Constant <value: tensor = float {-inf}> ()
    c_ax0 = Constant <value: tensor = int64[1] {0}> ()
    c_ax1 = Constant <value: tensor = int64[1] {1}> ()
    c_ax2 = Constant <value: tensor = int64[1] {2}> ()
    c_ax3 = Constant <value: tensor = int64[1] {3}> ()
    c_axm1 = Constant <value: tensor = int64[1] {-1}> ()
    c_axm2 = Constant <value: tensor = int64[1] {-2}> ()
    c_m1 = Constant <value: tensor = int64[1] {-1}> ()
    c_true = Constant <value: tensor = bool {1}> ()
    qf = Cast <to: int = 1> (q)
    kf = Cast <to: int = 1> (k)
    vf = Cast <to: int = 1> (v)
    s_1d = Shape <start: int = 2, end: int = 3> (q)
    s_len = Squeeze (s_1d)
    bh_1d = Shape <start: int = 0, end: int = 2> (q)
    d_1d = Shape <start: int = 3, end: int = 4> (q)
    c_scale = Constant <value_float: float = @scale> ()
"""


def masked_softmax(
    prefix: str, logits: str, allowed: str, out: str, bias: str | None = None, normalize: bool = True
) -> str:
    """Softmax over the last axis of float32 ``logits`` (+ ``bias``) restricted to ``allowed``.

    Same values as ``seo_export.ops.softmax.masked_softmax``: the row max is that of the
    admissible entries (0 for a row with none), inadmissible entries contribute exactly 0 and
    an all-zero denominator becomes 1, so an empty row gives zeros, never NaN.

    How, and why this way: the boolean mask is turned into a 0 / -inf table with ``Where`` on
    the mask's own (broadcast, usually H-fold smaller) shape and added to the logits for the
    row max (x + 0 = x and x + -inf = -inf exactly, in float32: nothing like a -1e9 that
    overflows in FP16). ``Exp`` then runs on the finite shifted logits capped at 0 (a no-op on
    admissible entries, which are <= the row max) and is multiplied by the 0/1 mask, which
    is exact since the capped exponential is finite. ONNX Runtime's ``Where`` on a full-size
    tensor is ~7x slower than a broadcast ``Mul``/``Add``, and its ``Exp`` is ~7x slower on
    underflowing inputs, so this keeps the masked softmax at elementwise speed.

    With ``normalize=False`` the fragment defines ``{out}`` as the masked exponentials and
    ``{out}_den`` as the guarded row sums, so a caller can divide after multiplying by V
    (a [.., D] division instead of a [.., keys] one).
    """
    p = prefix
    text = ""
    if bias is not None:
        text += f"""
    {p}_lb = Add ({logits}, {bias})"""
        logits = f"{p}_lb"
    exps = out if not normalize else f"{p}_expm"
    den = f"{out}_den" if not normalize else f"{p}_dens"
    text += f"""
    {p}_keep = Cast <to: int = 1> ({allowed})
    {p}_neg = Where ({allowed}, c_f0, c_ninf)
    {p}_sel = Add ({logits}, {p}_neg)
    {p}_max = ReduceMax <keepdims: int = 1> ({p}_sel, c_axm1)
    {p}_inf = IsInf ({p}_max)
    {p}_maxz = Where ({p}_inf, c_f0, {p}_max)
    {p}_shift = Sub ({logits}, {p}_maxz)
    {p}_cap = Min ({p}_shift, c_f0)
    {p}_exp = Exp ({p}_cap)
    {exps} = Mul ({p}_exp, {p}_keep)
    {p}_den = ReduceSum <keepdims: int = 1> ({exps}, c_axm1)
    {p}_pos = Greater ({p}_den, c_f0)
    {den} = Where ({p}_pos, {p}_den, c_f1)
"""
    if normalize:
        text += f"""    {out} = Div ({exps}, {den})
"""
    return text


def bias_prelude() -> str:
    """rb_f [H, 2K+1] float32, rb_k = K and rb_2k = 2K (int64 scalars) from the bias table's width."""
    return """
    rb_f = Cast <to: int = 1> (rel_bias)
    rb_w1 = Shape <start: int = 1, end: int = 2> (rel_bias)
    rb_w = Squeeze (rb_w1)
    rb_wm1 = Sub (rb_w, c_i1)
    rb_k = Div (rb_wm1, c_i2)
    rb_2k = Mul (rb_k, c_i2)
    rb_nk = Neg (rb_k)
"""


def bias_gather(prefix: str, rel: str, out: str) -> str:
    """``out`` [H, *rel.shape] = rel_bias[:, clamp(rel, -K, K) + K] (needs ``bias_prelude``)."""
    p = prefix
    return f"""
    {p}_lo = Max ({rel}, rb_nk)
    {p}_cl = Min ({p}_lo, rb_k)
    {p}_idx = Add ({p}_cl, rb_k)
    {out} = Gather <axis: int = 1> (rb_f, {p}_idx)
"""


LOOP_CARRIED_RANK = 4


def parse(text: str, overload: str, doc: str) -> onnx.FunctionProto:
    """Parse a body, give it its overload, and type loop-carried values as rank-4 tensors.

    The text parser writes a bare ``float`` graph input as a rank-0 tensor; the loop-carried
    values here are [B, H, L, L] matrices, so they get four unknown dimensions (which lets
    shape inference give the function's output a rank).
    """
    function = onnx.parser.parse_function(text)
    function.overload = overload
    function.doc_string = doc
    for node in function.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH and node.op_type == "Loop":
                for info in list(attr.g.input)[2:] + list(attr.g.output)[1:]:
                    shape = info.type.tensor_type.shape
                    shape.Clear()
                    for _ in range(LOOP_CARRIED_RANK):
                        shape.dim.add()
    _drop_unused(function)
    return function


def _names_used(node: onnx.NodeProto) -> set[str]:
    """Inputs of ``node`` and every name its subgraphs read (outer-scope references included)."""
    used = set(node.input)
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for graph in graphs:
            for inner in graph.node:
                used |= _names_used(inner)
            used |= {o.name for o in graph.output}
    return used


def _drop_unused(function: onnx.FunctionProto) -> None:
    """Remove nodes (shared constants mostly) whose outputs nothing reads, so runtimes don't warn."""
    while True:
        used = set(function.output)
        for node in function.node:
            used |= _names_used(node)
        keep = [n for n in function.node if any(o in used for o in n.output)]
        if len(keep) == len(function.node):
            return
        del function.node[:]
        function.node.extend(keep)
