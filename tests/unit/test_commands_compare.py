

def test_compare_help_prints_the_default_tolerances_without_a_traceback():
    """`compare --help` raised ValueError: argparse %-formats help, and the default held `peak:5%,...` (#9)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "diagnostics", "compare", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert "peak:5%,kv_tokens:5%,startup:20%" in " ".join(done.stdout.split())


def test_compare_refuses_cold_against_warm_unless_allowed(tmp_path):                     # issue 25
    import json
    import subprocess
    import sys

    def write(name, state, tokens):
        path = tmp_path / name
        path.write_text(json.dumps({"id": "a", "outcome": "ok", "cache_state": state, "kv_cache_tokens": tokens,
                                    "peak_process_gib": 2.0, "startup_s": 10.0}) + "\n")
        return str(path)

    warm, cold = write("warm.jsonl", "warm", 10000), write("cold.jsonl", "cold", 5900)
    cmd = [sys.executable, "-m", "diagnostics", "compare"]
    refused = subprocess.run(cmd + [warm, cold], capture_output=True, text=True)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "baseline ran with warm compile caches, the candidate with cold" in refused.stderr + refused.stdout
    allowed = subprocess.run(cmd + [warm, cold, "--allow-cache-mismatch"], capture_output=True, text=True)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "incomparable" in allowed.stdout and "cache warm -> cold: not judged" in allowed.stdout
