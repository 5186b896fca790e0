"""One error family. Library code raises these; only `cli.main` turns them into one line and exit code 2."""
from __future__ import annotations

import os


class NsysDoctorError(Exception):
    """A problem with the user's input that they can act on: names the file and says what is wrong."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class BadInput(NsysDoctorError):
    """The file is not a readable profile (wrong type, truncated, corrupt, missing tables)."""


class NoData(NsysDoctorError):
    """The profile is readable but lacks what the analysis needs (no CUDA work, no requests)."""


class ToolMissing(NsysDoctorError):
    """An external tool (nsys) is needed and could not be found or failed."""
