#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: system packages with apt when missing,
# then a virtual environment in .venv with torch==2.13.0 (CPU build) installed first.
# The tools and their packages are listed once, in device_sim/toolchain.py.
# Usage: bash tools/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
    echo "setup: installing system packages: $*" >&2
    local sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "$@" >&2
}

# Python first: it reads the toolchain table.
bootstrap=()
command -v python3 >/dev/null || bootstrap+=(python3)
python3 -m venv --help >/dev/null 2>&1 || bootstrap+=(python3-venv)
[ ${#bootstrap[@]} -eq 0 ] || apt_install "${bootstrap[@]}"

read -r -a need_apt <<< "$(python3 -m device_sim.toolchain packages --missing)"
[ ${#need_apt[@]} -eq 0 ] || apt_install "${need_apt[@]}"
# Renode has no Debian package: from PATH, else the Mono build next to the project, unpacked once.
python3 -m device_sim.toolchain unpack-renode >&2
still_missing="$(python3 -m device_sim.toolchain packages --missing)"
if [ -n "$still_missing" ]; then
    echo "setup: still missing after apt-get: $still_missing" >&2
    exit 1
fi

# The venv sees site-packages of the interpreter that made it, so a torch already there is reused.
[ -x .venv/bin/python ] || python3 -m venv --system-site-packages .venv
py=.venv/bin/python
if ! "$py" -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
    echo "setup: installing torch==2.13.0 (CPU build)" >&2
    "$py" -m pip install -q torch==2.13.0 >&2
fi
"$py" -m pip install -q -e '.[test]' >&2
echo "setup: ready ($("$py" -c 'import torch; print("torch", torch.__version__)'))" >&2
