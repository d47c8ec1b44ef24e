"""diagnostics.explain.model: Culprit and Explanation, and their one JSON shape."""

from __future__ import annotations

import json

from diagnostics.explain.model import Culprit, Explanation


def test_culprit_and_explanation_to_json():
    c = Culprit("max_num_seqs", 256, 32, "activation_peak", "why.", fixes_alone=False, effect_gib=1.23456, steps=3)
    assert c.to_json() == {"setting": "max_num_seqs", "value": 256, "suggested": 32, "term": "activation_peak",
                           "why": "why.", "fixes_alone": False, "effect_gib": 1.235}
    fix = {"max_num_seqs": 32}
    e = Explanation("oom_profile", "vision_encoder", [c], "summary.", fix, "log+estimate", notes=["n"])
    doc = e.to_json()
    assert doc == {"outcome": "oom_profile", "phase": "vision_encoder", "culprits": [c.to_json()],
                   "summary": "summary.", "fix": {"max_num_seqs": 32}, "basis": "log+estimate"}
    doc["fix"]["max_num_seqs"] = 1
    assert e.fix == {"max_num_seqs": 32}  # a copy, not the live dict
    assert json.loads(json.dumps(e.to_json())) == e.to_json()
