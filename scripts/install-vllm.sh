#!/usr/bin/env bash
# Install one pinned vLLM with the companions it worked with:  scripts/install-vllm.sh VERSION [pip options...]
#
#   scripts/install-vllm.sh 0.6.3                 pip install vllm==0.6.3 -c scripts/constraints/vllm-0.6.3.txt
#   scripts/install-vllm.sh 0.6.5 --dry-run       -c scripts/constraints/vllm-0.6.txt (the series' file)
#   scripts/install-vllm.sh 0.33.0                no file: vLLM 0.33's own requirements already bound transformers
#
# The constraints file is scripts/constraints/vllm-VERSION.txt, else vllm-MAJOR.MINOR.txt. Old vLLM releases put no
# upper bound on transformers, and pip would install transformers 5.x, with which every start fails (docs/gpu-box.md).
# Uses $PY (default: python) for pip. Used by scripts/install.sh gpu VERSION and the tox gate environments.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="${1:-}"
if ! [[ "$version" =~ ^[0-9]+\.[0-9]+(\.[0-9]+)*(\.post[0-9]+)?$ ]]; then
  echo "scripts/install-vllm.sh: vLLM version '${version}' is not a release number; expected e.g. 0.6.3 or 0.8.5.post1" >&2
  exit 2
fi
shift
series="$(cut -d. -f1,2 <<<"$version")"
constraints=()
for f in "$here/constraints/vllm-$version.txt" "$here/constraints/vllm-$series.txt"; do
  if [ -f "$f" ]; then constraints=(-c "$f"); break; fi
done
echo "scripts/install-vllm.sh: vllm==$version${constraints:+ with constraints scripts/${constraints[1]#"$here/"}}" >&2
exec ${PY:-python} -m pip install "vllm==$version" "${constraints[@]}" "$@"
