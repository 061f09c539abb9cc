#!/usr/bin/env bash
# Installs the Debian 12 packages rngmux needs to build and test. Idempotent: only
# missing packages are installed, and `apt-get update` runs only if something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake g++ clang-14 clang-format libclang-rt-14-dev git
  libasio-dev libcli11-dev libssl-dev libgtest-dev googletest nlohmann-json3-dev
  python3 rng-tools5 ent ekeyd-egd-linux socat iproute2
  pkg-config libftdi1-dev
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
  if [[ "$status" != "installed" ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  echo "install-deps: error: missing packages: ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi

echo "install-deps: installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
