

def test_compare_help_prints_the_default_tolerances_without_a_traceback():
    """`compare --help` raised ValueError: argparse %-formats help, and the default held `peak:5%,...` (#9)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "diagnostics", "compare", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert "peak:5%,kv_tokens:5%,startup:20%" in " ".join(done.stdout.split())
