#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: system packages with apt when missing,
# then a virtual environment in .venv with torch==2.13.0 (CPU build) installed first.
# Usage: bash tools/setup.sh            (prints the path of the environment's bin folder last)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v qemu-system-arm    >/dev/null || need_apt+=(qemu-system-arm)
command -v arm-none-eabi-gcc  >/dev/null || need_apt+=(gcc-arm-none-eabi)
[ -d /usr/lib/arm-none-eabi/newlib ] || need_apt+=(libnewlib-arm-none-eabi)
command -v gcc                >/dev/null || need_apt+=(gcc)
command -v python3            >/dev/null || need_apt+=(python3)
python3 -m venv --help        >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing system packages: ${need_apt[*]}" >&2
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >&2
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
