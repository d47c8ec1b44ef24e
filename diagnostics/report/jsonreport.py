"""JSON report for machines: the redacted report dict, with `schema_version` (see report/content.py)."""

from __future__ import annotations

import json


def render_json(report: dict) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
