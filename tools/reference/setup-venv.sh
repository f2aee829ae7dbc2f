#!/usr/bin/env bash
# Creates (or reuses) the reference Python environment used to regenerate fixtures.
# It lives outside the repository (torch alone is several GB) and is shared across checkouts.
# Usage: tools/reference/setup-venv.sh   -> prints the venv's python path on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${CLIP_REF_VENV:-$HOME/.cache/clip-rs/reference-venv}"
stamp="$venv/.requirements.sha256"
want="$(cat "$here/requirements.txt" "$here/requirements-nodeps.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
  "$venv/bin/python" -m pip install --quiet --no-deps -r "$here/requirements-nodeps.txt"
  echo "$want" >"$stamp"
fi
echo "$venv/bin/python"
