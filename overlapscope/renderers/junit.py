"""JUnit XML for CI test reports: one test case per rank and gate check."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ..gate import GateResult

# characters XML 1.0 cannot carry at all, even escaped
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(s: str) -> str:
    return _NOT_XML.sub("\ufffd", s)


def gate_junit(result: GateResult) -> str:
    skipped = sum(c.passed and not c.checked for c in result.checks)
    suite = ET.Element("testsuite", name="overlapscope gate", tests=str(len(result.checks)),
                       failures=str(len(result.failures)), errors="0", skipped=str(skipped))
    for check in result.checks:
        classname = "overlapscope.gate.run" if check.rank is None else f"overlapscope.gate.rank{check.rank}"
        case = ET.SubElement(suite, "testcase", classname=classname, name=_clean(check.name), time="0")
        if check.passed and not check.checked:  # let through by --allow-unchecked: not checked, never "pass"
            ET.SubElement(case, "skipped", message=_clean(check.detail))
        elif check.passed:
            ET.SubElement(case, "system-out").text = _clean(check.detail)
        else:
            failure = ET.SubElement(case, "failure", message=_clean(check.detail), type="overlapscope.gate")
            failure.text = _clean(check.detail)
    if result.notes:
        ET.SubElement(suite, "system-out").text = _clean("\n".join(result.notes))
    root = ET.Element("testsuites", name="overlapscope", tests=suite.get("tests"), failures=suite.get("failures"))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
