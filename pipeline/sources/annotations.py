"""The three annotation files of CelebAMask-HQ: CelebA ids, 40 attributes, head pose.

Rows are matched to samples by the image index each line names (``{i}.jpg`` or the ``idx``
column), never by line position, so a reordered or partial file cannot shift a row onto the
wrong sample. A line that does not parse stops the build with ``file:LINE: what is wrong``
(with ``--on-error skip`` it makes the sample it names invalid instead); a file that is absent
simply leaves its arrays out of the store.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from celebamask.dataset import (
    ANNOTATION_FILES,
    ATTRIBUTE_FILE,
    CELEBA_IMAGE_COUNT,
    MAPPING_FILE,
    POSE_FILE,
    POSE_NAMES,
    SPLIT_STARTS,
)
from celebamask.errors import CelebaMaskError
from celebamask.sources.index import SourceRef

log = logging.getLogger(__name__)

_PLUS_MINUS_ONE = frozenset({"1", "-1"})
_IMAGE_NAME = re.compile(r"^(\d+)\.jpg$", re.IGNORECASE)  # both CelebAMask-HQ's and CelebA's files
# Skip mode: lines that did not parse, each with the sample its line names (None if none).
BadLines = list[tuple[int | None, CelebaMaskError]]


@dataclass
class Annotations:
    """Annotation arrays in store row order; ``None`` where the file was absent."""

    celeba_index: np.ndarray | None = None  # int32 (N,)
    celeba_file: np.ndarray | None = None  # str (N,)
    attribute_names: tuple[str, ...] = ()
    attributes: np.ndarray | None = None  # int8 (N, A), 1 present / 0 absent
    pose: np.ndarray | None = None  # float32 (N, 3): yaw, pitch, roll
    file_rows: dict[str, int | None] = field(default_factory=dict)  # data rows per file; None = absent
    problems: BadLines = field(default_factory=list)  # skip mode: (sample or None, error) of what did not parse

    @property
    def split(self) -> np.ndarray | None:
        if self.celeba_index is None:
            return None
        split = split_of(self.celeba_index)
        split[self.celeba_index < 0] = 255  # a row skipped in skip mode: no split (the array's fill value)
        return split

    def provenance(self) -> dict[str, Any]:
        return {name: {"present": rows is not None, "rows": rows} for name, rows in self.file_rows.items()}


def split_of(celeba_index: np.ndarray) -> np.ndarray:
    """Split number per row (0 train, 1 val, 2 test) by the g_partition thresholds."""
    return (np.searchsorted(np.asarray(SPLIT_STARTS[1:]), np.asarray(celeba_index), side="right")).astype(np.uint8)


def _lines(data: bytes, where: str) -> list[tuple[int, list[str]]]:
    """(1-based line number, whitespace-split fields) of every non-blank line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CelebaMaskError(where, f"not a text file (byte {exc.start} is not UTF-8)") from exc
    return [(number, line.split()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def _fail(where: str, line: int, problem: str) -> CelebaMaskError:
    return CelebaMaskError(f"{where}:{line}", problem)


def _image_index(token: str, where: str, line: int) -> int:
    match = _IMAGE_NAME.match(token)
    if not match:
        raise _fail(where, line, f"expected an image name like 0.jpg in the first column, got {token!r}")
    return int(match.group(1))


def _named_sample(fields: list[str]) -> int | None:
    """The sample a line names in its first column (``12`` or ``12.jpg``), if it names one."""
    match = _IMAGE_NAME.match(fields[0]) if fields else None
    token = match.group(1) if match else fields[0] if fields else ""
    return int(token) if token.isdigit() else None


def _bad_line(bad: BadLines | None, error: CelebaMaskError, fields: list[str] | None = None) -> None:
    """Raise ``error``; or, when bad lines are skipped, keep it with the sample its line names."""
    if bad is None:
        raise error
    bad.append((_named_sample(fields) if fields else None, error))


def _int(token: str, where: str, line: int, what: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise _fail(where, line, f"{what} is not an integer: {token!r}") from None


def _counted_header(lines: list[tuple[int, list[str]]], where: str,
                    bad: BadLines | None = None) -> tuple[int, list[str], list[tuple[int, list[str]]]]:
    """CelebA's list format: a row count, a line of column names, then the rows; returns the names'
    line number, the names and the rows.

    The count is only advisory: every row names its image, and copies cut down to a subset (a
    hold-out, a sample) keep the full file's count or drop the line, so a count that disagrees
    is logged, not fatal (nor a bad line for ``bad``); a sample without a row is still an error
    (``_in_row_order``).
    """
    if not lines:
        raise CelebaMaskError(where, "expected a row count line and a line of column names")
    count_line, count_fields = lines[0]
    count = None
    if len(count_fields) == 1:
        count = _int(count_fields[0], where, count_line, "the row count")
        lines = lines[1:]
    if not lines:
        raise CelebaMaskError(where, "expected a line of column names after the row count")
    (names_line, names), rows = lines[0], lines[1:]
    if _IMAGE_NAME.match(names[0]):
        raise _fail(where, names_line, f"expected a line of column names, got a row for {names[0]}")
    if count is not None and count != len(rows):
        log.warning("%s:%d: says %d rows but the file has %d; rows are matched by their image name",
                    where, count_line, count, len(rows))
    return names_line, names, rows


def _by_image(rows: list[tuple[int, list[str]]], where: str, width: int,
              bad: BadLines | None) -> dict[int, tuple[int, list[str]]]:
    """Rows keyed by the image index in their first column, each with exactly ``width`` values."""
    keyed: dict[int, tuple[int, list[str]]] = {}
    for line, fields in rows:
        try:
            index = _image_index(fields[0], where, line)
            if len(fields) - 1 != width:
                raise _fail(where, line, f"expected {width} values after {fields[0]}, got {len(fields) - 1}")
            if index in keyed:
                raise _fail(where, line, f"second row for {fields[0]} (first on line {keyed[index][0]})")
        except CelebaMaskError as error:
            _bad_line(bad, error, fields)
            continue
        keyed[index] = (line, fields[1:])
    return keyed


def parse_mapping(data: bytes, where: str, bad: BadLines | None = None) -> dict[int, tuple[int, str]]:
    """``idx orig_idx orig_file`` → {idx: (0-based CelebA index, CelebA file name)}.

    A line that does not parse raises, or with ``bad`` is left out and kept there (as do the other
    parsers); a file that is not of this format always raises."""
    lines = _lines(data, where)
    if not lines or [f.lower() for f in lines[0][1]] != ["idx", "orig_idx", "orig_file"]:
        raise CelebaMaskError(where, "expected the header line 'idx orig_idx orig_file'")
    mapping: dict[int, tuple[int, str]] = {}
    first_line: dict[int, int] = {}
    for line, fields in lines[1:]:
        try:
            if len(fields) != 3:
                raise _fail(where, line, f"expected 3 columns (idx orig_idx orig_file), got {len(fields)}")
            index = _int(fields[0], where, line, "idx")
            orig = _int(fields[1], where, line, "orig_idx")
            if not 0 <= orig < CELEBA_IMAGE_COUNT:
                raise _fail(where, line, f"orig_idx {orig} is not a CelebA index (0 ... {CELEBA_IMAGE_COUNT - 1})")
            match = _IMAGE_NAME.match(fields[2])
            if not match or int(match.group(1)) != orig + 1:
                raise _fail(where, line, f"orig_file {fields[2]!r} is not the 1-based file of orig_idx {orig} "
                                         f"({orig + 1:06d}.jpg)")
            if index in mapping:
                raise _fail(where, line, f"second row for idx {index} (first on line {first_line[index]})")
        except CelebaMaskError as error:
            _bad_line(bad, error, fields)
            continue
        mapping[index] = (orig, fields[2])
        first_line[index] = line
    return mapping


def parse_attributes(data: bytes, where: str, bad: BadLines | None = None) -> tuple[tuple[str, ...], dict[int, np.ndarray]]:
    """CelebA's ±1 attribute list → (names, {image index: int8 row, 1 present / 0 absent})."""
    names_line, names, rows = _counted_header(_lines(data, where), where, bad)
    if len(set(names)) != len(names):
        raise _fail(where, names_line, "attribute names are not unique")
    values: dict[int, np.ndarray] = {}
    for index, (line, fields) in _by_image(rows, where, len(names), bad).items():
        if not _PLUS_MINUS_ONE.issuperset(fields):
            column = next(k for k, token in enumerate(fields) if token not in _PLUS_MINUS_ONE)
            _bad_line(bad, _fail(where, line, f"{names[column]} is {fields[column]!r}; attribute values are 1 or -1"),
                      [str(index)])
            continue
        values[index] = np.array([token == "1" for token in fields], dtype=np.int8)
    return tuple(names), values


def parse_poses(data: bytes, where: str, bad: BadLines | None = None) -> dict[int, tuple[float, float, float]]:
    """Yaw, pitch, roll in degrees per image index."""
    names_line, names, rows = _counted_header(_lines(data, where), where, bad)
    if len(names) != len(POSE_NAMES):
        raise _fail(where, names_line, f"expected 3 column names (Yaw Pitch Raw), got {' '.join(names)!r}")
    poses: dict[int, tuple[float, float, float]] = {}
    for index, (line, fields) in _by_image(rows, where, len(POSE_NAMES), bad).items():
        try:
            angles = tuple(float(token) for token in fields)
            if not all(math.isfinite(angle) for angle in angles):
                raise _fail(where, line, f"pose values are not finite: {' '.join(fields)!r}")
        except ValueError:
            _bad_line(bad, _fail(where, line, f"pose values are not numbers: {' '.join(fields)!r}"), [str(index)])
            continue
        except CelebaMaskError as error:
            _bad_line(bad, error, [str(index)])
            continue
        poses[index] = angles  # type: ignore[assignment]
    return poses


def _in_row_order(by_index: dict[int, Any], sample_ids: Sequence[int], where: str, fill: Any,
                  bad: BadLines | None) -> list[Any]:
    missing = [i for i in sample_ids if i not in by_index]
    if missing and bad is None:
        shown = ", ".join(str(i) for i in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise CelebaMaskError(where, f"no row for {len(missing)} of the {len(sample_ids)} samples being built "
                                     f"(sample {shown})")
    if bad is not None:
        named = {index for index, _ in bad}
        bad += [(i, CelebaMaskError(where, f"no row for sample {i}")) for i in missing if i not in named]
    return [by_index.get(i, fill) for i in sample_ids]


def load_annotations(ref: SourceRef, files_present: dict[str, str], sample_ids: Sequence[int],
                     skip_bad: bool = False) -> Annotations:
    """Parse the annotation files that exist (``files_present``: name → path relative to the root)
    and arrange their rows in the order of ``sample_ids``.

    With ``skip_bad`` nothing raises: a line that does not parse, or a sample without a row, gets
    the arrays' fill values and an entry in ``problems`` (with the sample, if the line names one);
    a file that cannot be read as its format is left out as if absent, and noted there too."""
    result = Annotations(file_rows=dict.fromkeys(ANNOTATION_FILES))
    bad: BadLines | None = [] if skip_bad else None
    with ref.open() as files:
        for name, rel in files_present.items():
            where = files.display(rel)
            try:
                data = files.read(rel)
                if name == MAPPING_FILE:
                    mapping = parse_mapping(data, where, bad)
                    rows = _in_row_order(mapping, sample_ids, where, (-1, ""), bad)
                    result.celeba_index = np.array([orig for orig, _ in rows], dtype=np.int32)
                    result.celeba_file = np.array([file for _, file in rows], dtype=str)
                    result.file_rows[name] = len(mapping)
                elif name == ATTRIBUTE_FILE:
                    names, values = parse_attributes(data, where, bad)
                    rows = _in_row_order(values, sample_ids, where, np.full(len(names), -1, dtype=np.int8), bad)
                    result.attribute_names = names
                    result.attributes = np.stack(rows) if rows else np.zeros((0, len(names)), dtype=np.int8)
                    result.file_rows[name] = len(values)
                elif name == POSE_FILE:
                    poses = parse_poses(data, where, bad)
                    rows = _in_row_order(poses, sample_ids, where, (math.nan,) * 3, bad)
                    result.pose = np.array(rows, dtype=np.float32).reshape(-1, 3)
                    result.file_rows[name] = len(poses)
            except CelebaMaskError as error:
                if bad is None:
                    raise
                bad.append((None, error))
    result.problems = bad or []
    return result
