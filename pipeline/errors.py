"""One error type for everything the user can fix: it names the file and what is wrong."""

from __future__ import annotations

from pathlib import Path


class CelebaMaskError(Exception):
    """Printed by the CLI as ``error: <path>: <what is wrong>``."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Errors raised in joblib workers are pickled back to the coordinator.
        return (type(self), (self.path, self.problem))
