"""A sequential JPEG rewritten so that libjpeg-turbo, in strict mode, checks every Huffman code and
where every scan's data ends. The pixels it decodes to are exactly the original's.

Two gaps in libjpeg's own checks let damaged scan data decode to garbage without a warning:

* its fast Huffman path, taken whenever the whole file is in memory, decodes a code that no table
  defines as 0 and says nothing; the careful path warns. A restart interval turns the fast path
  off, so every rewritten scan has one.
* a scan whose data was damaged so that its last block ends a few bytes early: the bytes left over
  sit in libjpeg's bit buffer (read ahead up to 7 bytes) and are dropped silently at the end of the
  scan. libjpeg counts such bytes only at a restart, and reports the count when it next looks for
  a marker. So each scan gets a restart interval of exactly its own number of MCUs, a restart
  marker after its data, one more MCU row of flat blocks (the frame grows by that row, which is
  cut off again after decoding), and an empty comment segment, whose reading reports any count.

No restart marker is due inside the original data, so its DC predictions are never reset, and
the added row sits below the image: where nothing is interpolated vertically from the row below
(no vertical chroma upsampling at the decode's scale, libjpeg scaling a subsampled component up
in its IDCT instead where it can, as for 4:2:0 decoded at 1/2) the rewritten file's pixels are
the original's, the added row cut off. Elsewhere (4:2:0 at full scale, 4:4:0, a frame that is not
square) the pixels come from the file with only a restart interval added, and the rewritten file
is decoded a second time at 1/8 scale for its warnings alone. A file whose tables lack a flat
block's codes, or where only some scans have a restart interval of their own, gets restart
intervals alone (its codes checked, not where its scans end); one whose every scan has its own,
a progressive one (its scans always take the careful path) or one whose markers are damaged is
decoded as it is, for libjpeg to judge. Markers libjpeg reads past (TEM, RSTn and DNL outside a
scan, fill bytes, a DRI after the last scan) are read past here too: the careful path also reads
a fill byte before a stuffed zero right, which the fast one misreads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_DCT_SIZE = 8
_MAX_INTERVAL = 0xFFFF  # the largest restart interval DRI can carry
_EMPTY_COMMENT = b"\xff\xfe\x00\x02"
_RESTART_0 = b"\xff\xd0"


@dataclass(frozen=True)
class RewrittenJpeg:
    """The bytes to decode and how many rows of the (square) image to keep of what they decode to."""

    data: bytes
    extra_rows: bool  # the decoded image has an added MCU row at the bottom: keep ``width`` rows
    check: bytes | None = None  # a file to decode only for libjpeg's warnings, its pixels unused


@dataclass
class _Component:
    id: int
    h: int
    v: int


def rewritten_for_checks(data: bytes, scale_eighths: int) -> RewrittenJpeg:
    """``data`` rewritten as the module says, for a decode at ``scale_eighths``/8. Where the added
    row would change the image's bottom rows (vertical chroma upsampling at this scale, a frame
    that is not square) the pixels come from ``data`` with only a restart interval, and the
    rewritten file is a second decode, for its warnings only. Only the restart interval where the
    added row cannot be coded (a table without a flat block's codes, a scan past the interval's
    limit); ``data`` itself where the file cannot be read for a rewrite (progressive, restart
    intervals of its own, damaged markers: libjpeg judges it)."""
    try:
        layout = _read_layout(data)
    except _NotRewritable:
        return RewrittenJpeg(data, False)
    if all(scan.restart_interval for scan in layout.scans):
        return RewrittenJpeg(data, False)  # restarts already take the careful path
    if any(scan.restart_interval for scan in layout.scans):  # some scans only: the others get one
        return RewrittenJpeg(_with_restart_interval_only(data, layout), False)
    try:
        checked = _with_scan_ends_checked(data, layout)
    except _NotRewritable:
        return RewrittenJpeg(_with_restart_interval_only(data, layout), False)  # the Huffman codes still checked
    if _bottom_row_is_independent(layout, scale_eighths):
        return RewrittenJpeg(checked, True)
    return RewrittenJpeg(_with_restart_interval_only(data, layout), False, check=checked)


class _NotRewritable(Exception):
    """The file is not one this module can rewrite exactly (libjpeg will judge it as it is)."""


@dataclass
class _Scan:
    sos: int  # offset of the SOS marker
    data_end: int  # offset of the marker that ends its entropy-coded data
    selectors: list[tuple[int, int, int]]  # (component id, DC table, AC table)
    tables: dict[tuple[int, int], str | None]  # (class, id) -> the code of symbol 0, as of this scan
    restart_interval: int  # the interval in force for this scan (the last DRI before it), 0: none


@dataclass
class _Layout:
    sof: int  # offset of the SOF marker
    width: int
    height: int
    components: list[_Component]
    scans: list[_Scan]

    def __post_init__(self) -> None:
        self.h_max = max(c.h for c in self.components)
        self.v_max = max(c.v for c in self.components)


def _read_layout(data: bytes) -> _Layout:
    """Every marker segment and scan of a sequential Huffman JPEG, or _NotRewritable."""
    tables: dict[tuple[int, int], str | None] = {}
    sof, width, height, components, scans, restart_interval = -1, 0, 0, [], [], 0
    position = 2
    while True:
        while data[position : position + 2] == b"\xff\xff":
            position += 1
        if position + 2 > len(data) or data[position] != 0xFF:
            raise _NotRewritable
        marker = data[position + 1]
        if marker == 0xD9:
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM and RSTn outside scans: libjpeg skips them
            position += 2
            continue
        if marker == 0xD8 or position + 4 > len(data):
            raise _NotRewritable
        end = position + 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if end > len(data) or end < position + 4:
            raise _NotRewritable
        body = data[position + 4 : end]
        if marker in (0xC0, 0xC1):
            if sof >= 0 or len(body) < 6 or len(body) < 6 + 3 * body[5]:
                raise _NotRewritable
            sof, height, width = position, int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big")
            components = [_Component(body[6 + 3 * k], body[7 + 3 * k] >> 4, body[7 + 3 * k] & 15) for k in range(body[5])]
        elif 0xC2 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            raise _NotRewritable  # progressive (its scans always take the careful path) and the rest
        elif marker == 0xC4:
            _read_huffman_tables(body, tables)
        elif marker == 0xDD:
            restart_interval = int.from_bytes(body[:2], "big")  # for the scans that follow, until the next
        elif marker == 0xDA:
            scan_end = _scan_data_end(data, end, restarts=restart_interval > 0)
            scans.append(_Scan(position, scan_end, _scan_selectors(body), dict(tables), restart_interval))
            position = scan_end
            continue
        position = end
    if sof < 0 or not scans or not components or any(c.h not in (1, 2, 3, 4) or c.v not in (1, 2, 3, 4) for c in components):
        raise _NotRewritable
    return _Layout(sof, width, height, components, scans)


def _read_huffman_tables(body: bytes, tables: dict[tuple[int, int], str | None]) -> None:
    """The code (a bit string) of symbol 0 in each table of a DHT segment, None if it has none:
    symbol 0 is DC difference 0 in a DC table and end-of-block in an AC table, all a flat block
    needs. Codes are canonical: each length's codes follow the previous length's, doubled."""
    i = 0
    while i < len(body):
        if i + 17 > len(body):
            raise _NotRewritable
        kind, counts = body[i], body[i + 1 : i + 17]
        symbols = body[i + 17 : i + 17 + sum(counts)]
        if len(symbols) != sum(counts):
            raise _NotRewritable
        index, code, first = symbols.find(0), 0, 0
        tables[kind >> 4, kind & 15] = None
        for length, count in enumerate(counts, start=1):
            if 0 <= index < first + count:
                tables[kind >> 4, kind & 15] = format(code + index - first, f"0{length}b")
                break
            code, first = (code + count) << 1, first + count
        i += 17 + sum(counts)


def _scan_selectors(body: bytes) -> list[tuple[int, int, int]]:
    if not body or len(body) < 1 + 2 * body[0] + 3:
        raise _NotRewritable
    spectral = body[1 + 2 * body[0] : 4 + 2 * body[0]]
    if spectral != b"\x00\x3f\x00":
        raise _NotRewritable  # not a sequential scan
    return [(body[1 + 2 * k], body[2 + 2 * k] >> 4, body[2 + 2 * k] & 15) for k in range(body[0])]


def _scan_data_end(data: bytes, start: int, restarts: bool) -> int:
    """Where the entropy-coded data from ``start`` ends: at its first marker, a 0xFF followed by
    neither a stuffed 0x00 nor another 0xFF (a fill byte, which may precede a marker or a stuffed
    0x00), nor, in a scan with a restart interval, a restart marker."""
    tail = np.frombuffer(data, dtype=np.uint8, offset=start)
    ones = np.flatnonzero(tail[:-1] == 0xFF)  # a 0xFF every 256 bytes or so: looked at all at once
    following = tail[ones + 1]
    ends = (following != 0) & (following != 0xFF)
    if restarts:
        ends &= (following < 0xD0) | (following > 0xD7)
    markers = ones[ends]
    if not len(markers):
        raise _NotRewritable  # truncated
    return start + int(markers[0])


def _bottom_row_is_independent(layout: _Layout, scale_eighths: int) -> bool:
    """Whether every output row of the image depends only on blocks of its own MCU row at this
    scale: no component upsampled vertically after libjpeg's IDCT scaling (which scales a
    subsampled component up instead where the factors allow, as jdmaster.c does)."""
    if layout.width != layout.height or not 1 <= scale_eighths <= 8:
        return False
    for component in layout.components:
        size = scale_eighths
        while (size < _DCT_SIZE and (layout.h_max * scale_eighths) % (component.h * size * 2) == 0
               and (layout.v_max * scale_eighths) % (component.v * size * 2) == 0):
            size *= 2
        if layout.v_max * scale_eighths != component.v * size:
            return False
    return True


def _extended_height(layout: _Layout) -> int:
    """The frame's height with one more whole MCU row below its last (partial or whole) one."""
    mcu_height = _DCT_SIZE * layout.v_max
    return _ceil(layout.height, mcu_height) * mcu_height + mcu_height


def _mcu_geometry(layout: _Layout, scan: _Scan) -> tuple[int, int, list[tuple[str, str]]]:
    """(MCUs in the scan, MCUs the extended frame adds to it, the (DC code, AC code) of each block
    of an MCU of flat blocks), or _NotRewritable when a table lacks those codes."""
    by_id = {c.id: c for c in layout.components}
    if any(cid not in by_id for cid, _, _ in scan.selectors):
        raise _NotRewritable
    blocks: list[tuple[str, str]] = []
    for cid, dc, ac in scan.selectors:
        flat_dc, end_of_block = scan.tables.get((0, dc)), scan.tables.get((1, ac))
        if flat_dc is None or end_of_block is None:
            raise _NotRewritable
        count = by_id[cid].h * by_id[cid].v if len(scan.selectors) > 1 else 1
        blocks += [(flat_dc, end_of_block)] * count
    if len(scan.selectors) > 1:  # interleaved: whole MCUs, one more row of them
        per_row = _ceil(layout.width, _DCT_SIZE * layout.h_max)
        return per_row * _ceil(layout.height, _DCT_SIZE * layout.v_max), per_row, blocks
    component = by_id[scan.selectors[0][0]]  # one component: one block per MCU, only its own rows
    per_row = _ceil(_ceil(layout.width * component.h, layout.h_max), _DCT_SIZE)
    rows = _ceil(_ceil(layout.height * component.v, layout.v_max), _DCT_SIZE)
    extended_rows = _ceil(_ceil(_extended_height(layout) * component.v, layout.v_max), _DCT_SIZE)
    return per_row * rows, per_row * (extended_rows - rows), blocks


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _flat_mcus(count: int, blocks: list[tuple[str, str]]) -> bytes:
    """``count`` MCUs of flat blocks (DC difference 0, end of block), padded with ones, 0xFF stuffed."""
    bits = "".join(dc + ac for dc, ac in blocks) * count
    bits += "1" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big").replace(b"\xff", b"\xff\x00")


def _with_scan_ends_checked(data: bytes, layout: _Layout) -> bytes:
    sof_height = layout.sof + 5  # marker, length, precision, then the height
    view = memoryview(data)  # slices without copies: the file is copied once, by the join
    pieces = [view[:sof_height], _extended_height(layout).to_bytes(2, "big")]
    position = sof_height + 2
    for scan in layout.scans:
        total, extra, blocks = _mcu_geometry(layout, scan)
        if total > _MAX_INTERVAL or extra >= total:
            raise _NotRewritable
        pieces += [view[position : scan.sos], b"\xff\xdd\x00\x04" + total.to_bytes(2, "big"),
                   view[scan.sos : scan.data_end], _RESTART_0, _flat_mcus(extra, blocks), _EMPTY_COMMENT]
        position = scan.data_end
    pieces.append(view[position:])
    return b"".join(pieces)


def _with_restart_interval_only(data: bytes, layout: _Layout) -> bytes:
    """Before each scan, a restart interval no scan reaches (one MCU per 8×8 block at most), or
    the scan's own where it has one (so that the intervals in force stay the file's)."""
    if _ceil(layout.width, _DCT_SIZE) * _ceil(layout.height, _DCT_SIZE) > _MAX_INTERVAL:
        return data
    pieces, position = [], 0
    for scan in layout.scans:
        interval = scan.restart_interval or _MAX_INTERVAL
        pieces += [data[position : scan.sos], b"\xff\xdd\x00\x04" + interval.to_bytes(2, "big")]
        position = scan.sos
    pieces.append(data[position:])
    return b"".join(pieces)


def with_careful_huffman_decoding(data: bytes) -> bytes:
    """``data`` with a restart interval before every sequential scan, which keeps any libjpeg
    (Pillow's too) off its fast Huffman path: that path decodes a code no table defines as 0, and
    misreads a fill byte before a stuffed zero. The pixels are the file's; ``data`` itself when it
    cannot be read for this (libjpeg judges it as it is)."""
    try:
        return _with_restart_interval_only(data, _read_layout(data))
    except _NotRewritable:
        return data
