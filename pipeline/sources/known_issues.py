"""Known flaws of the dataset (configs/known_issues.toml) as one bitfield per sample.

A dissertation must leave out the duplicate pairs and broken annotations reproducibly and say
which: the build records each row's flags in the store and the list in its provenance.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from celebamask.config import CONFIG_DIR
from celebamask.errors import CelebaMaskError

KNOWN_ISSUES_PATH = CONFIG_DIR / "known_issues.toml"
FLAG_NAMES: tuple[str, ...] = ("duplicate", "misaligned", "missing_mask", "wrong_mask")  # bit k = 1 << k


@dataclass(frozen=True)
class KnownIssue:
    flag: str
    samples: tuple[int, ...]
    problem: str
    source: str


def load_known_issues(path: str | Path = KNOWN_ISSUES_PATH) -> list[KnownIssue]:
    """Parse the list; an unknown flag or a malformed entry stops with the file's name."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CelebaMaskError(path, f"cannot read known issues: {exc}") from exc
    issues = []
    for k, entry in enumerate(data.get("issue", [])):
        try:
            issue = KnownIssue(str(entry["flag"]), tuple(int(s) for s in entry["samples"]),
                               str(entry["problem"]), str(entry["source"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CelebaMaskError(path, f"issue {k}: needs flag, samples, problem, source ({exc})") from exc
        if issue.flag not in FLAG_NAMES:
            raise CelebaMaskError(path, f"issue {k}: unknown flag {issue.flag!r}; known: {', '.join(FLAG_NAMES)}")
        issues.append(issue)
    return issues


def flags_for(sample_ids: Sequence[int], issues: Sequence[KnownIssue]) -> np.ndarray:
    """uint8 per row: bit k set where the row's sample has FLAG_NAMES[k]."""
    row_of = {int(sample): row for row, sample in enumerate(sample_ids)}
    flags = np.zeros(len(sample_ids), dtype=np.uint8)
    for issue in issues:
        bit = np.uint8(1 << FLAG_NAMES.index(issue.flag))
        for sample in issue.samples:
            if sample in row_of:
                flags[row_of[sample]] |= bit
    return flags


def provenance(issues: Sequence[KnownIssue], flags: np.ndarray, path: str | Path = KNOWN_ISSUES_PATH) -> dict[str, Any]:
    return {
        "path": str(path),
        "issues": [{"flag": i.flag, "samples": list(i.samples), "problem": i.problem, "source": i.source}
                   for i in issues],
        "flagged_rows": int(np.count_nonzero(flags)),
    }
