"""Draw mof's favicon, a white "m" on the chat page's blue, from the 16 x 16 grid below, as the two
files mof-serve and mof-web's site ship: serve/static/favicon.svg (what the pages link) and
serve/static/favicon.ico (what a browser asks /favicon.ico for). Standard library only, nothing
fetched; tests/serve/test_favicon.py checks the shipped files are this script's output.

    python scripts/make_favicon.py            # rewrite both files
    python scripts/make_favicon.py --check    # exit 1 if they differ from what it would write
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

STATIC = Path(__file__).resolve().parents[1] / "serve" / "static"
COLOURS = {"b": (0x25, 0x63, 0xEB), "w": (0xFF, 0xFF, 0xFF)}     # "." is transparent
GRID = (
    "..bbbbbbbbbbbb..",
    ".bbbbbbbbbbbbbb.",
    "bbbbbbbbbbbbbbbb",
    "bbbbbbbbbbbbbbbb",
    "bbbwwwwwwwwwbbbb",
    "bbbwwwwwwwwwwbbb",
    "bbbwwbbwwbbwwbbb",
    "bbbwwbbwwbbwwbbb",
    "bbbwwbbwwbbwwbbb",
    "bbbwwbbwwbbwwbbb",
    "bbbwwbbwwbbwwbbb",
    "bbbwwbbwwbbwwbbb",
    "bbbbbbbbbbbbbbbb",
    "bbbbbbbbbbbbbbbb",
    ".bbbbbbbbbbbbbb.",
    "..bbbbbbbbbbbb..",
)
SIZE = len(GRID)


def svg() -> bytes:
    """The grid as SVG rectangles, one per run of a colour along a row (crisp at any size)."""
    rects = []
    for y, row in enumerate(GRID):
        x = 0
        while x < SIZE:
            end = x
            while end < SIZE and row[end] == row[x]:
                end += 1
            if row[x] in COLOURS:
                r, g, b = COLOURS[row[x]]
                rects.append(f'<rect x="{x}" y="{y}" width="{end - x}" height="1" fill="#{r:02x}{g:02x}{b:02x}"/>')
            x = end
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {SIZE} {SIZE}" shape-rendering="crispEdges">\n'
            + "\n".join(rects) + "\n</svg>\n").encode("ascii")


def ico() -> bytes:
    """The grid as a one-image ICO: a 32-bit BMP (BGRA rows bottom-up) and its 1-bit AND mask."""
    pixels = b"".join(bytes((*COLOURS[c][::-1], 255)) if c in COLOURS else bytes(4)
                      for row in reversed(GRID) for c in row)
    mask_row = (SIZE + 31) // 32 * 4                                 # 1 bit a pixel, rows padded to 32 bits
    mask = b"".join(int("".join("0" if c in COLOURS else "1" for c in row), 2).to_bytes(SIZE // 8, "big")
                    .ljust(mask_row, b"\0") for row in reversed(GRID))
    header = struct.pack("<IiiHHIIiiII", 40, SIZE, 2 * SIZE, 1, 32, 0, len(pixels) + len(mask), 0, 0, 0, 0)
    image = header + pixels + mask
    return struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", SIZE, SIZE, 0, 0, 1, 32, len(image), 22) + image


FILES = {"favicon.svg": svg, "favicon.ico": ico}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only compare the shipped files with what would be written")
    args = p.parse_args()
    stale = [name for name, make in FILES.items()
             if not (STATIC / name).is_file() or (STATIC / name).read_bytes() != make()]
    if args.check:
        print("favicon: " + (f"stale: {', '.join(stale)}" if stale else "up to date"))
        return 1 if stale else 0
    for name in stale:
        (STATIC / name).write_bytes(FILES[name]())
        print(f"wrote {STATIC / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
