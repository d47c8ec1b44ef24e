"""report/markdown.py: the Markdown layout's helpers (the whole report is checked in test_report.py)."""

from __future__ import annotations

from diagnostics.report.markdown import fence_for


def test_fence_outgrows_backticks_in_the_log():
    assert fence_for(["plain"]) == "```"
    assert fence_for(["a ```` b", "`x`"]) == "`````"
