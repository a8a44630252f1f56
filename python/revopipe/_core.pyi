"""Type stubs for revopipe._core, the Rust core (crate revopipe-python over revopipe-core).

Both functions copy their arguments out of Python first, then release the GIL for the work.
"""

from array import array
from collections.abc import Sequence
from typing import Final

__version__: Final[str]
"""The version of the Rust crate (CARGO_PKG_VERSION)."""

def encode_jsonl(
    names: Sequence[str],
    kinds: bytes,
    values: array[float],
    units: Sequence[str],
    timestamps: array[int],
    tags: Sequence[tuple[tuple[str, str], ...]],
) -> bytes:
    """Encode a columnar metric batch as JSON lines, one object per row, each line ending
    in a newline:

        {"type":"metric","name":...,"kind":"gauge","value":1.5,"unit":"By","timestamp":123,"tags":{"k":"v"}}

    Row i is (names[i], kinds[i], values[i], units[i], timestamps[i], tags[i]). kinds holds
    one code per row: 0 counter, 1 gauge, 2 histogram, 3 set (any bytes-like object works).
    values is a float64 buffer (array('d'); any 1-D buffer of format 'd' works), timestamps
    an int64 buffer of nanoseconds (array('q')), tags per row (key, value) pairs, written
    in the order given. NaN and infinite values are written as null; finite values parse
    back to the identical float.

    Raises ValueError naming the column and row when the columns differ in length or a
    kind is not 0..3, or a str holds a lone surrogate (no UTF-8 form); TypeError naming the
    column (and row) when a column has the wrong type.
    """

def series_keys(
    names: Sequence[str],
    tags: Sequence[tuple[tuple[str, str], ...]],
) -> list[int]:
    """The stable 64-bit series key of each (names[i], tags[i]), as an int in [0, 2**64).

    The key is XXH3-64 (seed 0) of the UTF-8 name and tags, each string followed by the
    byte 0xFF, with the tags sorted by key then value: independent of the order of the
    tags, and the same on every platform, process and run.

    Raises ValueError when the columns differ in length (or a str holds a lone surrogate),
    TypeError when one has the wrong type.
    """
