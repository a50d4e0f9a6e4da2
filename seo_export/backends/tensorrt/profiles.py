"""Optimization profiles: the [batch, seq] ranges an engine accepts, checked before TensorRT sees them.

A profile is written ``batch=1:8:32,seq=16:512:4096`` (min:opt:max, as trtexec's
min/opt/max shapes; a single number fixes the dimension) or kept in a JSON file
under ``engines/``::

    {"profiles": [{"batch": [1, 8, 32], "seq": [16, 512, 4096]}]}

Every engine input (``input_ids`` and ``attention_mask``) is [batch, seq], so one
profile gives the same three shapes to both.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from seo_export.errors import UsageError

INPUT_NAMES = ("input_ids", "attention_mask")
DIMENSIONS = ("batch", "seq")
ENGINES_DIR = Path("engines")
# The repository's engines/ folder, for editable installs run from elsewhere.
PROJECT_ENGINES_DIR = Path(__file__).resolve().parents[3] / "engines"
DEFAULT_PROFILE_FILE = "default"


@dataclass(frozen=True)
class DimRange:
    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        values = (self.min, self.opt, self.max)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise UsageError(f"dimension range must be integers, got {values}")
        if self.min <= 0:
            raise UsageError(f"dimension range {self} must be positive")
        if not self.min <= self.opt <= self.max:
            raise UsageError(f"dimension range {self} is out of order; need min <= opt <= max")

    def __str__(self) -> str:
        return f"{self.min}:{self.opt}:{self.max}"

    def contains(self, value: int) -> bool:
        return self.min <= value <= self.max


@dataclass(frozen=True)
class Profile:
    batch: DimRange
    seq: DimRange

    def __str__(self) -> str:
        return f"batch={self.batch},seq={self.seq}"

    def fits(self, batch: int, seq: int) -> bool:
        return self.batch.contains(batch) and self.seq.contains(seq)

    def shapes(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """(min, opt, max) shapes of a [batch, seq] input."""
        return ((self.batch.min, self.seq.min), (self.batch.opt, self.seq.opt), (self.batch.max, self.seq.max))

    def to_dict(self) -> dict:
        return {name: [r.min, r.opt, r.max] for name, r in (("batch", self.batch), ("seq", self.seq))}

    @classmethod
    def from_dict(cls, data: dict) -> Profile:
        if not isinstance(data, dict) or set(data) != set(DIMENSIONS):
            raise UsageError(f"a profile needs exactly the keys batch and seq, got {data!r}")
        ranges = {}
        for name in DIMENSIONS:
            value = data[name]
            if isinstance(value, int) and not isinstance(value, bool):
                value = [value] * 3
            if not isinstance(value, list) or len(value) != 3:
                raise UsageError(f"profile {name} must be [min, opt, max] or one integer, got {value!r}")
            ranges[name] = _dim_range(name, *value)
        return cls(**ranges)

    @classmethod
    def from_shapes(cls, minimum, optimum, maximum) -> Profile:
        """From three [batch, seq] shapes, as an engine reports them."""
        return cls(*(DimRange(int(minimum[i]), int(optimum[i]), int(maximum[i])) for i in range(2)))


def _dim_range(name: str, *values: int) -> DimRange:
    """A DimRange whose errors name the dimension."""
    try:
        return DimRange(*values)
    except UsageError as exc:
        raise UsageError(f"{name} {str(exc).replace('dimension range ', '', 1)}") from None


def parse_profile(spec: str) -> Profile:
    """``batch=1:8:32,seq=16:512:4096`` -> Profile; each range is min:opt:max or one number."""
    ranges: dict[str, DimRange] = {}
    for part in spec.split(","):
        name, sep, text = part.strip().partition("=")
        name = name.strip()
        if not sep or name not in DIMENSIONS:
            raise UsageError(f"bad profile {spec!r}: expected batch=MIN:OPT:MAX,seq=MIN:OPT:MAX")
        if name in ranges:
            raise UsageError(f"bad profile {spec!r}: {name} is given twice")
        pieces = text.split(":")
        if len(pieces) not in (1, 3):
            raise UsageError(f"bad profile {spec!r}: {name} needs MIN:OPT:MAX or one number, got {text!r}")
        try:
            values = [int(p) for p in pieces]
        except ValueError:
            raise UsageError(f"bad profile {spec!r}: {name} needs integers, got {text!r}") from None
        ranges[name] = _dim_range(name, *(values * 3 if len(values) == 1 else values))
    missing = [d for d in DIMENSIONS if d not in ranges]
    if missing:
        raise UsageError(f"bad profile {spec!r}: missing {' and '.join(missing)}")
    try:
        return Profile(**ranges)
    except UsageError as exc:
        raise UsageError(f"bad profile {spec!r}: {exc}") from None


def resolve_profile_file(name: str | os.PathLike) -> Path:
    """A path as given, else ``NAME`` or ``NAME.json`` under ``engines/`` (here, then in the project)."""
    path = Path(name)
    candidates = [path] + [folder / file for folder in (ENGINES_DIR, PROJECT_ENGINES_DIR)
                           for file in (path, Path(f"{path}.json"))]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UsageError(f"profile file {name} does not exist (looked in the current folder and {ENGINES_DIR}/)")


def load_profile_file(name: str | os.PathLike) -> list[Profile]:
    path = resolve_profile_file(name)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read profile file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"profile file {path} is not valid JSON: {exc}") from None
    entries = data.get("profiles") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"profile file {path} needs a non-empty list under \"profiles\"")
    profiles = []
    for index, entry in enumerate(entries):
        try:
            profiles.append(Profile.from_dict(entry))
        except UsageError as exc:
            raise UsageError(f"profile file {path}, profile {index}: {exc}") from None
    return profiles


def input_profile_shapes(profile: Profile, input_dims: dict[str, tuple]) -> dict[str, tuple]:
    """min/opt/max shapes for each model input; fails on inputs or fixed dims the profile cannot serve.

    ``input_dims`` maps input names to their dims, where None or a negative number
    marks a dynamic dimension (ONNX symbolic dims, TensorRT's -1).
    """
    unknown = sorted(set(input_dims) - set(INPUT_NAMES))
    if unknown:
        raise UsageError(
            f"the model has input {unknown[0]!r}; profiles cover only {' and '.join(INPUT_NAMES)} [batch, seq]"
        )
    if "input_ids" not in input_dims:
        raise UsageError("the model has no input 'input_ids' [batch, seq]")
    shapes = {}
    for name, dims in input_dims.items():
        if len(dims) != 2:
            raise UsageError(f"input {name!r} has rank {len(dims)}; expected [batch, seq]")
        for axis, (dim, r) in enumerate(zip(dims, (profile.batch, profile.seq))):
            fixed = dim is not None and dim >= 0
            if fixed and not r.min == r.opt == r.max == dim:
                raise UsageError(
                    f"input {name!r} has a fixed {DIMENSIONS[axis]} of {dim}, but the profile asks for {r}; "
                    f"use {DIMENSIONS[axis]}={dim} or export with dynamic dimensions"
                )
        shapes[name] = profile.shapes()
    return shapes


def choose_profile(profiles: list[Profile], batch: int, seq: int) -> int:
    """Index of the profile to run [batch, seq] with: among those that fit, the one whose opt is nearest."""
    fitting = [i for i, p in enumerate(profiles) if p.fits(batch, seq)]
    if not fitting:
        ranges = "; ".join(str(p) for p in profiles)
        raise UsageError(f"inputs of batch {batch} and seq {seq} fit no profile of this engine ({ranges})")
    # seq first: attention tactics are tuned for the sequence length more than for the batch.
    return min(fitting, key=lambda i: (abs(profiles[i].seq.opt - seq), abs(profiles[i].batch.opt - batch)))
