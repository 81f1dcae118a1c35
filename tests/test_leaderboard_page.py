"""The rendered leaderboard page, looked at in a real headless browser (Chromium, when installed).

The check reads the screenshot's pixels: the chart's points must be drawn in their
colours (red for the undefended recommender, blue for a defense), so a page that
fails to render its SVG, or renders it empty, fails.
"""

import shutil
import struct
import subprocess
import zlib

import numpy as np
import pytest

from recguard.leaderboard.board import Board, Row, Score
from recguard.leaderboard.render import page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
UNDEFENDED_RED = (0xC5, 0x30, 0x30)
DEFENSE_BLUE = (0x2B, 0x6C, 0xB0)


def board() -> Board:
    b = Board("ml-100k", "apt", "mf", "average", "T-HR@50", "HR@50", False, True)
    b.rows = [
        Row("apt", "A", "p", "https://e.org", [0, 1, 2], Score(0.21, 0.03, 3), Score(0.27, 0.01, 3),
            Score(0.29, 0.01, 3), -0.7, 0.01, -0.01),
        Row("none", "A", "p", "https://e.org", [0, 1, 2], Score(0.91, 0.05, 3), Score(0.26, 0.02, 3),
            Score(0.30, 0.01, 3)),
    ]
    return b


def read_png(data: bytes) -> np.ndarray:
    """An 8-bit RGB or RGBA, non-interlaced PNG as a (height, width, channels) array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    out = np.zeros((height, stride), dtype=np.uint8)
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride) if kind else ():
            left = line[i - bpp] if i >= bpp else 0
            up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            else:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        out[y] = np.frombuffer(bytes(line), dtype=np.uint8)
        previous = line
    return out.reshape(height, width, bpp)


def count_colour(image: np.ndarray, rgb: tuple[int, int, int], slack: int = 12) -> int:
    return int((np.abs(image[:, :, :3].astype(int) - np.array(rgb)).max(axis=2) <= slack).sum())


def test_png_reader_reads_what_zlib_and_the_filters_wrote():
    # a 2x2 RGB image, rows filtered with Sub and Paeth
    rows = [bytes([1, 10, 20, 30, 5, 5, 5]), bytes([4, 1, 1, 1, 0, 0, 0])]
    ihdr = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + b"\0\0\0\0"

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
           + chunk(b"IEND", b""))
    image = read_png(png)
    assert image[0].tolist() == [[10, 20, 30], [15, 25, 35]]
    assert image[1].tolist() == [[11, 21, 31], [15, 25, 35]]


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (Debian: apt-get install chromium)")
def test_the_page_renders_its_chart_in_a_headless_browser(tmp_path):
    html = tmp_path / "index.html"
    html.write_text(page([board()]))
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--force-device-scale-factor=1", "--window-size=760,640",
                    f"--screenshot={shot}", html.as_uri()],
                   check=True, capture_output=True, timeout=120)
    image = read_png(shot.read_bytes())
    assert image.shape[:2] == (640, 760)
    assert count_colour(image, UNDEFENDED_RED) > 40    # the undefended point (r=5: ~78 px)
    assert count_colour(image, DEFENSE_BLUE) > 40      # the defense's point
