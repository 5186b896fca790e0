"""What `diff`, `check` and `export` take: a report saved by `analyze --format json` (read back and validated
against its schema) or a profile (analysed now). The command line decides which and hands Reports to compare/."""
from __future__ import annotations

from ..errors import BadInput
from ..report import Report


def load_report(path, range_name: str | None = None, skip: int | None = None) -> Report:
    from ..compare.saved import read_saved
    from ..read import require_file
    require_file(path, "profile or saved report")
    try:
        report = read_saved(path, range_name)
    except OSError as err:
        raise BadInput(path, f"cannot be read ({err.strerror or err})")
    if report is not None:
        return report
    from ..analysis import analyze
    return analyze(path, range_name=range_name, skip=skip)
