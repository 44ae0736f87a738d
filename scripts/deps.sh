#!/bin/sh
# Installs the Debian packages a make target needs, when they are missing.
# Usage: scripts/deps.sh build|test|all
# As root it runs apt-get; otherwise it names the missing packages and the command to
# install them, and fails.
set -eu

build_pkgs="gcc make libc6-dev libssl-dev zlib1g-dev pkg-config"
test_pkgs="python3 python3-pytest python3-websockets openssl"

case "${1:-build}" in
build) want="$build_pkgs" ;;
test | all) want="$build_pkgs $test_pkgs" ;;
*)
    echo "usage: $0 build|test|all" >&2
    exit 2
    ;;
esac

missing=""
for pkg in $want; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "eddy: missing Debian packages:$missing" >&2
    echo "eddy: install them with: sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "eddy: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends $missing >/dev/null; then
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends $missing >/dev/null
fi
