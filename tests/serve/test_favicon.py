"""The icon: GET /favicon.ico is a real 16 x 16 ICO (a browser asks for it by itself), the page
links static/favicon.svg, and both are what scripts/make_favicon.py draws."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="mof-serve needs the [serve] extra")

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_icons_are_the_scripts_drawing():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_favicon.py"), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_favicon_ico_is_a_16_pixel_icon_and_the_page_links_the_svg(served):
    r = httpx.get(served + "/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"] == "image/x-icon"
    reserved, kind, count = struct.unpack("<HHH", r.content[:6])
    width, height, _, _, planes, bits, size, offset = struct.unpack("<BBBBHHII", r.content[6:22])
    assert (reserved, kind, count, width, height, bits) == (0, 1, 1, 16, 16, 32)
    assert offset + size == len(r.content)
    assert struct.unpack("<Iii", r.content[offset:offset + 12]) == (40, 16, 32)    # a BMP: XOR image + AND mask
    page = httpx.get(served + "/").text
    icons = re.findall(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page)
    assert icons == ["/static/favicon.svg"]
    svg = httpx.get(served + icons[0])
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(svg.content)
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox") == "0 0 16 16"
    assert len(root) > 10 and all(child.tag.endswith("rect") for child in root)
