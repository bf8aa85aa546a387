# shellcheck shell=bash
# One .venv for run.sh and test.sh, installed from requirement files and refreshed when one
# changes. usage: source .ci/venv.sh; ensure_venv .venv requirements.txt [more.txt ...]
# The stamp (.venv/requirements.stamp) holds one "sha256  file" line per file installed, so
# each script asks only for what it needs and neither reinstalls after the other.
# A .venv that cannot install (creation interrupted, or made where python3-venv was missing,
# so it has no pip) is removed and made again; a python3 that cannot make one is named in
# one line with the package to install.

venv_usable() {
  # A creation that finished leaves .created (or, before that marker, a stamp) and a pip.
  local venv="$1"
  [[ -x "$venv/bin/python" ]] &&
    [[ -e "$venv/.created" || -e "$venv/requirements.stamp" ]] &&
    "$venv/bin/python" -c 'import pip' >/dev/null 2>&1
}

create_venv() {
  # Make $1 with pip, from scratch; say in one line what to install when python3 cannot.
  local venv="$1"
  if ! command -v python3 >/dev/null; then
    echo "venv: no python3 on PATH: install Python 3 (Debian/Ubuntu: apt-get install python3 python3-venv)" >&2
    return 1
  fi
  # Debian and Ubuntu ship venv's ensurepip in a package of its own, not installed by default.
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "venv: python3 cannot make a virtual environment (no venv or ensurepip module): install python3-venv (Debian/Ubuntu: apt-get install python3-venv), then run this again" >&2
    return 1
  fi
  echo "venv: creating $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" || return 1
  # Written last: a creation cut short (Ctrl-C) leaves no marker and is made again next time.
  touch "$venv/.created"
}

ensure_venv() {
  local venv="$1" stamp wanted=() file line
  shift
  stamp="$venv/requirements.stamp"
  if [[ -e "$venv" ]] && ! venv_usable "$venv"; then
    echo "venv: $venv is unusable (its creation was cut short, or it has no pip); making it again" >&2
  fi
  if ! venv_usable "$venv"; then
    create_venv "$venv" || return 1
  fi
  for file in "$@"; do
    line=$(sha256sum "$file")
    grep -qxF "$line" "$stamp" 2>/dev/null || wanted+=("$file")
  done
  ((${#wanted[@]})) || return 0
  echo "venv: installing ${wanted[*]} into $venv" >&2
  local args=()
  for file in "${wanted[@]}"; do args+=(-r "$file"); done
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}" || return 1
  for file in "${wanted[@]}"; do
    line=$(sha256sum "$file")
    # Keep other files' lines; replace this file's old one.
    { grep -vF "  $file" "$stamp" 2>/dev/null || true; echo "$line"; } >"$stamp.new"
    mv "$stamp.new" "$stamp"
  done
}
