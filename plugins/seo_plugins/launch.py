"""Launch-parameter arithmetic for the seo kernels, as plain functions.

Nothing here imports torch, Triton or TensorRT: the JIT launchers evaluate these
functions on ints, the AOT manifest on symbols (giving expressions such as
``cdiv(S, 64)``), and a TensorRT ``aot_impl`` can pass its shape expressions and
``trtp.cdiv``. Shape symbols: B batch, H heads, S sequence length.
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass, replace

# tl.dot needs every tile dimension >= 16.
MIN_TILE = 16
# CUDA's limit on gridDim.y, which holds batch * heads in the local-window grid.
MAX_GRID_Y = 65535


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


# Dynamic shared memory a kernel may use without the launcher opting in to more; TensorRT's
# AOT launcher is not known to opt in, so every AOT kernel must fit.
AOT_SHARED_LIMIT = 48 * 1024
# The AOT landmark kernel keeps four FP32 L x L operands of the pseudo-inverse's products in shared
# memory: 16 KiB at 32 landmarks, 64 KiB at 64 (measured), which no re-tiling of one program fits.
AOT_MAX_BLOCK_L = 32
# The means kernel gives a program about this many tokens (many short segments, or one long) ...
MEANS_TOKENS = 512
# ... loaded in [segments, step, D] tiles of about this many elements.
MEANS_TILE = 4096
# A3 . V is split over keys until about this many programs run (several waves on 132 SMs) ...
KEY_SPLIT_PROGRAMS = 1024
# ... but each split spans at least this many key tiles, bounding what the pinv kernel merges.
KEY_SPLIT_MIN_BLOCKS = 8


@dataclass(frozen=True)
class LandmarkLaunch:
    """Tiles of the single landmark kernel TensorRT's AOT path launches (``landmark_fwd``, one
    program per (batch, head) running every stage): BLOCK_S tokens per step x BLOCK_L landmarks
    x BLOCK_D columns."""

    block_s: int
    block_l: int
    block_d: int
    num_warps: int
    num_stages: int
    means_step: int = 1  # tokens of every segment per step of the landmark means

    def constexprs(self) -> dict[str, int]:
        return {"BLOCK_S": self.block_s, "MEANS_STEP": self.means_step, "BLOCK_L": self.block_l,
                "BLOCK_D": self.block_d}

    def grid(self, batch, heads, seq, div=cdiv):
        return landmark_grid(batch, heads, seq)


@dataclass(frozen=True)
class LandmarkStagesLaunch:
    """Tiles of the four landmark kernels of the JIT path (``seo_plugins.kernels.landmark``):
    segment means (``means_constexprs``), A3 . V over key splits (block_n keys per step),
    pinv(A2) and W per (batch, head), and A1 . W per block_m queries."""

    num_landmarks: int
    block_n: int
    block_m: int
    block_l: int
    block_d: int
    num_warps: int  # the streaming kernels
    pinv_warps: int  # the per-(batch, head) kernel, whose tiles are L x L
    num_stages: int

    @property
    def pinv_scratch(self) -> int:
        """FP32 elements of the pinv kernel's scratch per (batch, head): both operands of its largest
        product (``landmark_parts.staged_dot``: [L, L] x [L, L], [L, D] x [D, L] or [L, L] x [L, D])."""
        return 2 * self.block_l * max(self.block_l, self.block_d)

    def means_tiles(self, seq: int) -> tuple[int, int]:
        """(segments per program, tokens of each per step) of the means kernel: about MEANS_TOKENS
        tokens per program (short segments are batched), steps of about MEANS_TILE elements."""
        seg = cdiv(max(seq, 1), self.num_landmarks)
        segments = min(self.block_l, next_power_of_2(cdiv(MEANS_TOKENS, seg)))
        return segments, _means_step(segments, self.block_d, seg)

    def means_constexprs(self, seq: int) -> dict[str, int]:
        segments, step = self.means_tiles(seq)
        return {"SEGMENTS": segments, "STEP": step}

    def key_splits(self, batch: int, heads: int, seq: int) -> tuple[int, int]:
        """(splits, keys per split) of A3 . V: about KEY_SPLIT_PROGRAMS programs in all, each at least
        KEY_SPLIT_MIN_BLOCKS key tiles long (the pinv kernel merges the splits' partial results)."""
        blocks = cdiv(max(seq, 1), self.block_n)
        wanted = max(1, min(cdiv(KEY_SPLIT_PROGRAMS, batch * heads), cdiv(blocks, KEY_SPLIT_MIN_BLOCKS)))
        per_split = cdiv(blocks, wanted) * self.block_n
        return cdiv(max(seq, 1), per_split), per_split

    def grids(self, batch: int, heads: int, seq: int) -> dict[str, tuple[int, int, int]]:
        """The launch grid of each stage, in launch order; batch * heads goes on grid y."""
        _check_grid_y(batch * heads)
        splits, _ = self.key_splits(batch, heads, seq)
        return {"means": (cdiv(self.num_landmarks, self.means_tiles(seq)[0]), batch * heads, 1), "keys": (splits, batch * heads, 1),
                "pinv": (batch * heads, 1, 1), "queries": (cdiv(seq, self.block_m), batch * heads, 1)}


def local_window_launch(head_dim: int, window_left: int, window_right: int, elem_bytes: int = 2) -> LocalWindowLaunch:
    """Tiles of about one window (16..64 query rows): a narrow band wastes little of each
    visited key tile, a wide one gets full 64-row tiles. For wide heads or FP32 inputs
    (``elem_bytes`` 4) key tiles, then query tiles, then pipeline stages shrink until
    ``local_window_shared_estimate`` fits AOT_SHARED_LIMIT."""
    if window_left < 0 or window_right < 0:
        raise ValueError(f"window_left and window_right must be >= 0, got {window_left}, {window_right}")
    block_d = padded_head_dim(head_dim)
    block_m = max(MIN_TILE, min(64, next_power_of_2(window_left + window_right + 1)))
    launch = LocalWindowLaunch(block_m, block_m, block_d, 0, num_stages=2)
    while local_window_shared_estimate(launch, elem_bytes) > AOT_SHARED_LIMIT:
        if launch.block_n > MIN_TILE:
            launch = replace(launch, block_n=launch.block_n // 2)
        elif launch.block_m > MIN_TILE:
            launch = replace(launch, block_m=launch.block_m // 2)
        elif launch.num_stages > 1:
            launch = replace(launch, num_stages=launch.num_stages - 1)
        else:
            break  # cannot fit: plugins compile and TensorRT's AOT path refuse the compiled kernel
    # The [BLOCK_M, BLOCK_N] score tile costs about twice the registers per element of the
    # accumulator (scores, masks, bias addresses): FP16 64 x 64 tiles spill on sm_80 with 4 warps.
    warps = max(_warps_for_tile(launch.block_m, block_d), _warps_for_tile(launch.block_m, 2 * launch.block_n))
    return replace(launch, num_warps=warps)


def local_window_shared_estimate(launch: LocalWindowLaunch, elem_bytes: int) -> int:
    """Bytes of the tiles the local kernel stages in shared memory: K and V for each pipeline
    stage, Q, and P (the A operand of P @ V on sm_90). It only picks tiles: what counts is the
    compiled kernel's figure, which ``plugins compile`` checks (FP16 with head dim 64 takes
    exactly the 48 KiB on sm_90; scripts/results/ptxas_resources.md)."""
    kv = 2 * launch.num_stages * launch.block_n * launch.block_d
    return elem_bytes * (kv + launch.block_m * launch.block_d + launch.block_m * launch.block_n)


def landmark_aot_problem(num_landmarks: int) -> str | None:
    """Why the single AOT landmark kernel cannot take ``num_landmarks``, or None when it can."""
    block_l = landmark_block_l(num_landmarks)
    if block_l <= AOT_MAX_BLOCK_L:
        return None
    return (f"{num_landmarks} landmarks need a {block_l} x {block_l} pseudo-inverse tile, whose operands alone pass "
            f"the {AOT_SHARED_LIMIT // 1024} KiB of shared memory TensorRT's AOT launcher gives a kernel; use at "
            f"most {AOT_MAX_BLOCK_L} landmarks for AOT, or run the node on the JIT path (node attribute aot=0)")


def landmark_launch(head_dim: int, num_landmarks: int, elem_bytes: int = 2) -> LandmarkLaunch:
    """Tiles of the single AOT kernel: all landmarks in one tile (the pseudo-inverse needs the whole
    L x L matrix in one program); the sequence step shrinks as L grows to keep the [L, step] logit
    tile small. Refuses more than AOT_MAX_BLOCK_L landmarks, which cannot fit AOT_SHARED_LIMIT."""
    block_d, block_l = _landmark_tiles(head_dim, num_landmarks)
    problem = landmark_aot_problem(num_landmarks)
    if problem:
        raise ValueError(problem)
    # FP32 tiles (FMA dots, no tensor cores) need shorter steps to avoid spills; 8 warps for both (4 warps
    # at FP16 with a bias spilled 28 B on sm_90, at 255 registers; 8 take about 205).
    block_s, num_warps = (64, 8) if elem_bytes == 2 else (16, 8)
    return LandmarkLaunch(block_s, block_l, block_d, num_warps, num_stages=1,
                          means_step=_means_step(block_l, block_d, MEANS_TILE))  # S is not known here


def landmark_stages_launch(head_dim: int, num_landmarks: int, elem_bytes: int = 2) -> LandmarkStagesLaunch:
    """Tiles of the JIT path's four kernels, all landmarks in one tile: 64-token steps on 16-bit
    tensor cores; FP32 (FMA dots) takes shorter steps and more threads to avoid spills. Checked by
    ptxas for the zoo's 64 landmarks (tests/plugins/test_ptxas.py): FP32 queries in 32-row blocks
    spilled 84 B, BF16 keys in 64-key steps 8 B on sm_80 (255 registers; 32-key steps take 248)."""
    block_d, block_l = _landmark_tiles(head_dim, num_landmarks)
    if elem_bytes != 2:
        return LandmarkStagesLaunch(num_landmarks, block_n=16, block_m=16, block_l=block_l, block_d=block_d,
                                    num_warps=8, pinv_warps=_pinv_warps(block_l), num_stages=2)
    wide = block_l > 32
    return LandmarkStagesLaunch(num_landmarks, block_n=32 if wide else 64, block_m=64, block_l=block_l,
                                block_d=block_d, num_warps=8 if wide else 4, pinv_warps=_pinv_warps(block_l),
                                num_stages=2)


def _pinv_warps(block_l: int) -> int:
    """About 32 FP32 values of each L x L tile per thread (Newton-Schulz keeps four live; its products
    take 16-wide K steps through a scratch workspace, ``landmark_parts.staged_dot``: 128 registers
    at L = 64 with 8 warps, no spills)."""
    return max(4, min(16, block_l * block_l // 512))


def _means_step(segments: int, block_d: int, seg: int) -> int:
    """Tokens per segment per step: a [segments, step, block_d] tile of about MEANS_TILE elements,
    no longer than the segment."""
    return max(1, min(next_power_of_2(seg), MEANS_TILE // (segments * block_d)))


def landmark_block_l(num_landmarks: int) -> int:
    """The landmark tile: all landmarks, a power of two >= MIN_TILE."""
    if num_landmarks <= 0:
        raise ValueError(f"num_landmarks must be > 0, got {num_landmarks}")
    return max(MIN_TILE, next_power_of_2(num_landmarks))


def _landmark_tiles(head_dim: int, num_landmarks: int) -> tuple[int, int]:
    return padded_head_dim(head_dim), landmark_block_l(num_landmarks)


def _check_grid_y(programs) -> None:
    if isinstance(programs, int) and programs > MAX_GRID_Y:
        raise ValueError(f"batch * heads = {programs} exceeds CUDA's grid limit {MAX_GRID_Y}")


def local_window_grid(batch, heads, seq, block_m: int, div=cdiv):
    """(query blocks, batch * heads, 1): one program per query block of one (batch, head).
    batch * heads must stay <= MAX_GRID_Y."""
    _check_grid_y(batch * heads)
    return (div(seq, block_m), batch * heads, 1)


def landmark_grid(batch, heads, seq):
    """(batch * heads, 1, 1): one program per (batch, head) runs every Nystrom stage (the AOT kernel)."""
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
