# shellcheck shell=bash
# One .venv for run.sh and test.sh, installed from requirement files and refreshed when one
# changes. usage: source .ci/venv.sh; ensure_venv .venv requirements.txt [more.txt ...]
# The stamp (.venv/requirements.stamp) holds one "sha256  file" line per file installed, so
# each script asks only for what it needs and neither reinstalls after the other.

ensure_venv() {
  local venv="$1" stamp wanted=() file line
  shift
  stamp="$venv/requirements.stamp"
  if [[ ! -x "$venv/bin/python" ]]; then
    echo "venv: creating $venv" >&2
    python3 -m venv "$venv"
  fi
  for file in "$@"; do
    line=$(sha256sum "$file")
    grep -qxF "$line" "$stamp" 2>/dev/null || wanted+=("$file")
  done
  ((${#wanted[@]})) || return 0
  echo "venv: installing ${wanted[*]} into $venv" >&2
  local args=()
  for file in "${wanted[@]}"; do args+=(-r "$file"); done
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}"
  for file in "${wanted[@]}"; do
    line=$(sha256sum "$file")
    # Keep other files' lines; replace this file's old one.
    { grep -vF "  $file" "$stamp" 2>/dev/null || true; echo "$line"; } >"$stamp.new"
    mv "$stamp.new" "$stamp"
  done
}
