#!/usr/bin/env bash
# Set up a development environment from scratch: system packages, a Python 3.12 venv in .venv, and
# this package with its test extras. Safe to re-run: it skips what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

# System libraries: FFmpeg for LeRobot's video decoding (torchcodec), OSMesa / EGL for headless MuJoCo.
packages=(ffmpeg libosmesa6 libegl1)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    echo "Installing system packages: ${missing[*]}"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "WARNING: cannot install ${missing[*]} (no apt-get); install them with your package manager." >&2
  fi
fi

# Python 3.12 (LeRobot 0.6 needs it), found even when the pyenv `python3.12` shim is inactive.
find_python() {
  local candidates=()
  [ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
  candidates+=(python3.12)
  if command -v pyenv >/dev/null 2>&1; then
    candidates+=("$(pyenv root)"/versions/3.12*/bin/python3.12)
  fi
  candidates+=("$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12)
  for candidate in "${candidates[@]}"; do
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

stamp=.venv/.installed
want="$(cat pyproject.toml setup.py | sha256sum | cut -d' ' -f1)"  # what the install depends on
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "Environment in .venv is up to date."
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  python=$(find_python) || {
    echo "ERROR: Python 3.12 not found. Install it (e.g. 'pyenv install 3.12') or set PYTHON=/path/to/python3.12." >&2
    exit 1
  }
  echo "Creating .venv with $python"
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "Installing lerobot_policy_pi_star_recap and its dependencies (LeRobot 0.6.1, torch, MetaWorld)..."
.venv/bin/python -m pip install -q -e ".[dev]"
.venv/bin/python -c "import lerobot_policy_pi_star_recap, lerobot, metaworld; print('lerobot', lerobot.__version__)"
echo "$want" > "$stamp"
