"""`check` results -> what CI reads: the PASS/FAIL lines, JUnit XML, GitHub Actions annotations and the Markdown
step summary. A result is anything with `name`, `passed` and `message` (compare.gate.RuleResult).

Rule messages quote names from the profile (finding titles, kernel names) and the user's file names, and a CI log
acts on some of what it reads: a line that starts `::error` (after spaces) is a workflow command, an XML parser
stops at a control character, Markdown renders links, images and HTML. So every piece of text goes through
render.safe.clean, the PASS/FAIL lines are never wrapped (no line can start with a piece of a message), and each
format gets its own escaping on top: percent-encoding for workflow commands, XML's for JUnit, a backslash before
every ASCII punctuation character for Markdown (CommonMark: it is then literal, HTML and autolinks included).
"""
from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET

from .console import console
from .safe import clean, escape

PERCENTILES = ("p50", "p90", "p99", "max", "mean")


def render(results, profile: str, file=None) -> None:
    """One line per rule, then the verdict. Lines are not wrapped (soft_wrap): a terminal wraps them itself, and a
    CI log then runs only the lines the tool wrote, each starting PASS, FAIL or nsys-doctor."""
    file = file or sys.stdout
    con = console(file, soft_wrap=True)
    failed = sum(not r.passed for r in results)
    for r in results:
        mark = "[green]PASS[/green]" if r.passed else "[bold red]FAIL[/bold red]"
        con.print(f"{mark} {escape(r.name)}: {escape(r.message)}")
    verdict = "[green]all rules hold[/green]" if not failed else f"[bold red]{failed} of {len(results)} " \
                                                                 "rules fail[/bold red]"
    con.print(f"nsys-doctor check {escape(profile)}: {verdict}")


def junit_xml(results, name: str = "nsys-doctor check") -> str:
    """One testcase per rule, a failure with the message when it fails. XML 1.0 cannot hold most C0 characters
    even as character references, so they are replaced (clean), then ElementTree escapes the rest."""
    suite = ET.Element("testsuite", name=clean(name), tests=str(len(results)),
                       failures=str(sum(not r.passed for r in results)), errors="0")
    for r in results:
        case = ET.SubElement(suite, "testcase", classname="nsys-doctor", name=clean(r.name))
        message = clean(r.message)
        if r.passed:
            ET.SubElement(case, "system-out").text = message
        else:
            ET.SubElement(case, "failure", message=message, type="performance").text = message
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


def _gh_escape(s: str, prop: bool = False) -> str:
    """The runner's own encoding of command data (and, for properties, of ':' and ',')."""
    s = clean(s).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return s.replace(":", "%3A").replace(",", "%2C") if prop else s


def github_annotations(results, file: str | None = None) -> list[str]:
    """GitHub Actions workflow commands, one `::error` per failed rule (and `::notice` for the summary)."""
    where = f"file={_gh_escape(file, True)}," if file else ""
    lines = [f"::error {where}title={_gh_escape('nsys-doctor ' + r.name, True)}::{_gh_escape(r.message)}"
             for r in results if not r.passed]
    held = sum(r.passed for r in results)
    lines.append(f"::notice title=nsys-doctor check::{held} of {len(results)} rules hold")
    return lines


_MD_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")     # every ASCII punctuation character


def md(text) -> str:
    """Untrusted text as literal Markdown inside a table cell: controls cleaned, every ASCII punctuation character
    backslash-escaped (no emphasis, link, image, heading, HTML tag, entity or autolink survives; `|` cannot end
    the cell)."""
    return _MD_PUNCT.sub(r"\\\1", clean(text))


def step_summary(results, profile: str, latency: list[tuple[str, dict]], verdict: str | None = None) -> str:
    """The Markdown that `check --github` appends to $GITHUB_STEP_SUMMARY: the verdict, one row per rule, and the
    latency percentiles of each report given (`latency`: (label, requests.latency_ms) pairs)."""
    failed = sum(not r.passed for r in results)
    head = "all rules hold" if not failed else f"{failed} of {len(results)} rules fail"
    out = [f"### nsys-doctor check: {head}", "", f"Profile: {md(profile)}", ""]
    if verdict:
        out += [f"Verdict: {md(verdict)}", ""]
    out += ["| rule | result | measured |", "|---|---|---|"]
    out += [f"| {md(r.name)} | {'pass' if r.passed else '**FAIL**'} | {md(r.message)} |" for r in results]
    rows = [(label, lat) for label, lat in latency if lat]
    if rows:
        out += ["", "| request latency (ms) | " + " | ".join(PERCENTILES) + " |",
                "|---|" + "---:|" * len(PERCENTILES)]
        out += [f"| {md(label)} | " + " | ".join("-" if lat.get(k) is None else f"{lat[k]:.3f}" for k in PERCENTILES)
                + " |" for label, lat in rows]
    return "\n".join(out) + "\n"
