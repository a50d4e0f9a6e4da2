"""Launch-parameter arithmetic for the seo kernels, as plain functions.

Nothing here imports torch, Triton or TensorRT: the JIT launchers evaluate these
functions on ints, the AOT manifest on symbols (giving expressions such as
``cdiv(S, 64)``), and a TensorRT ``aot_impl`` can pass its shape expressions and
``trtp.cdiv``. Shape symbols: B batch, H heads, S sequence length.
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass

# tl.dot needs every tile dimension >= 16.
MIN_TILE = 16
# CUDA's limit on gridDim.y, which holds batch * heads in the local-window grid.
MAX_GRID_Y = 65535
# Shared memory for the pipelined K and V tiles of the local kernel: leaves room for the
# rest under the 48 KiB a kernel may use without the launcher opting in to more.
KV_SHARED_BUDGET = 32 * 1024


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def padded_head_dim(head_dim: int) -> int:
    """Tile width for the head dimension: a power of two >= 16; extra columns are masked."""
    if head_dim <= 0:
        raise ValueError(f"head_dim must be > 0, got {head_dim}")
    return max(MIN_TILE, next_power_of_2(head_dim))


def _warps_for_tile(rows: int, cols: int) -> int:
    """About 32 FP32 accumulator values per thread: 1 warp per 1024 tile elements, 1..8."""
    return max(1, min(8, rows * cols // 1024))


@dataclass(frozen=True)
class LocalWindowLaunch:
    """Tiles of the local-window kernel: BLOCK_M query rows x BLOCK_N keys x BLOCK_D head columns."""

    block_m: int
    block_n: int
    block_d: int
    num_warps: int
    num_stages: int

    def constexprs(self) -> dict[str, int]:
        return {"BLOCK_M": self.block_m, "BLOCK_N": self.block_n, "BLOCK_D": self.block_d}

    def grid(self, batch, heads, seq, div=cdiv):
        return local_window_grid(batch, heads, seq, self.block_m, div)


@dataclass(frozen=True)
class LandmarkLaunch:
    """Tiles of the landmark kernel: BLOCK_S tokens per step x BLOCK_L landmarks x BLOCK_D columns."""

    block_s: int
    block_l: int
    block_d: int
    num_warps: int
    num_stages: int

    def constexprs(self) -> dict[str, int]:
        return {"BLOCK_S": self.block_s, "BLOCK_L": self.block_l, "BLOCK_D": self.block_d}

    def grid(self, batch, heads, seq, div=cdiv):
        return landmark_grid(batch, heads, seq)


def local_window_launch(head_dim: int, window_left: int, window_right: int, elem_bytes: int = 2) -> LocalWindowLaunch:
    """Tiles of about one window (16..64 query rows): a narrow band wastes little of each
    visited key tile, a wide one gets full 64-row tiles. Key tiles shrink for wide heads or
    FP32 inputs (``elem_bytes`` 4) until the pipelined K and V tiles fit KV_SHARED_BUDGET."""
    if window_left < 0 or window_right < 0:
        raise ValueError(f"window_left and window_right must be >= 0, got {window_left}, {window_right}")
    num_stages = 2
    block_d = padded_head_dim(head_dim)
    block_m = max(MIN_TILE, min(64, next_power_of_2(window_left + window_right + 1)))
    block_n = block_m
    while block_n > MIN_TILE and 2 * num_stages * block_n * block_d * elem_bytes > KV_SHARED_BUDGET:
        block_n //= 2
    return LocalWindowLaunch(block_m, block_n, block_d, _warps_for_tile(block_m, block_d), num_stages)


def landmark_launch(head_dim: int, num_landmarks: int) -> LandmarkLaunch:
    """All landmarks in one tile (the pseudo-inverse needs the whole L x L matrix in one
    program); the sequence step shrinks as L grows to keep the [L, step] logit tile small."""
    if num_landmarks <= 0:
        raise ValueError(f"num_landmarks must be > 0, got {num_landmarks}")
    block_d = padded_head_dim(head_dim)
    block_l = max(MIN_TILE, next_power_of_2(num_landmarks))
    block_s = max(MIN_TILE, min(64, 4096 // block_l))
    return LandmarkLaunch(block_s, block_l, block_d, 4 if block_l <= 32 else 8, num_stages=1)


def local_window_grid(batch, heads, seq, block_m: int, div=cdiv):
    """(query blocks, batch * heads, 1): one program per query block of one (batch, head).
    batch * heads must stay <= MAX_GRID_Y."""
    if isinstance(batch * heads, int) and batch * heads > MAX_GRID_Y:
        raise ValueError(f"batch * heads = {batch * heads} exceeds CUDA's grid limit {MAX_GRID_Y}")
    return (div(seq, block_m), batch * heads, 1)


def landmark_grid(batch, heads, seq):
    """(batch * heads, 1, 1): one program per (batch, head) runs every Nystrom stage."""
    return (batch * heads, 1, 1)


class Symbol:
    """A shape expression as text; arithmetic on symbols builds the expression string."""

    def __init__(self, text: str):
        self.text = text

    def _binary(self, other, op: str, reverse: bool = False) -> "Symbol":
        a, b = (other, self) if reverse else (self, other)
        return Symbol(f"{_operand(a)} {op} {_operand(b)}")

    def __mul__(self, other):
        return self._binary(other, "*")

    def __rmul__(self, other):
        return self._binary(other, "*", reverse=True)

    def __str__(self) -> str:
        return self.text


def _operand(x) -> str:
    text = str(x)
    simple = text.isidentifier() or text.isdigit() or text.startswith("cdiv(")
    return text if simple else f"({text})"


def symbolic_cdiv(a, b) -> Symbol:
    return Symbol(f"cdiv({a}, {b})")


SHAPE_SYMBOLS = {"B": "batch (q.shape[0])", "H": "heads (q.shape[1])", "S": "sequence length (q.shape[2])"}


def grid_expressions(launch) -> list[str]:
    """The launch grid of ``launch`` as three expressions over B, H and S."""
    batch, heads, seq = (Symbol(name) for name in SHAPE_SYMBOLS)
    return [str(dim) for dim in launch.grid(batch, heads, seq, symbolic_cdiv)]


_BINARY_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv}


def eval_shape_expr(text: str, shapes: dict[str, int]) -> int:
    """Evaluate a manifest expression such as ``cdiv(S, 64)`` for concrete shapes.

    Only integers, the shape symbols, + - * // and cdiv are accepted, so a manifest
    from elsewhere cannot run code.
    """

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.Name) and node.id in shapes:
            return int(shapes[node.id])
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
            return _BINARY_OPS[type(node.op)](ev(node.left), ev(node.right))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "cdiv"
                and len(node.args) == 2 and not node.keywords):
            return cdiv(ev(node.args[0]), ev(node.args[1]))
        raise ValueError(f"unsupported shape expression {text!r} (at {ast.dump(node)[:60]})")

    return ev(ast.parse(text, mode="eval"))
