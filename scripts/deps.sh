#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs what a make target needs, when it is missing.
# Usage: scripts/deps.sh build|test
#   build: the compiler and the libraries eddy links (OpenSSL, zlib, hiredis and msgpack-c
#          for the Redis broker; libinih, jansson and libcurl for the eddy program: its
#          configuration file, JSON, the backend proxy), and npm, which installs the demo
#          page's socket.io-client (`make run`)
#   test:  also python3-jwt (auth tokens), python3-cryptography (an independent TLS 1.3 record peer), python3-websockets, python3-socketio (a second Socket.IO client; python3-requests for its long-polling) and pytest with pytest-xdist (two workers), openssl (test certificates), Node.js with the
#          npm packages in tests/clients, clients/js (TypeScript, to check eddy.d.ts) and
#          bench/scaleout (Node's Redis adapter, for the scale-out benchmark's smoke test, which
#          also needs iproute2's ss; and the npm Redis emitter, for the emitter tests),
#          headless Chromium, clang for the fuzzers, redis-server (the Redis broker's tests),
#          debhelper with dpkg-dev (`make deb`, tests/integration/test_deb.py) and valgrind
#          (bench/instructions' smoke test, tests/integration/test_instructions_bench.py)
# As root it runs apt-get; otherwise it names what is missing and the command to install
# it, and fails.
set -eu

build_pkgs="gcc make libc6-dev libssl-dev zlib1g-dev pkg-config libinih-dev libjansson-dev
    libcurl4-openssl-dev libhiredis-dev libmsgpack-dev"
test_pkgs="python3 python3-pytest python3-pytest-xdist python3-websockets python3-socketio python3-engineio python3-websocket
    python3-requests python3-jwt python3-cryptography python3-prometheus-client openssl chromium clang libclang-rt-14-dev redis-server
    debhelper dpkg-dev iproute2 valgrind"

case "${1:-build}" in
build) want="$build_pkgs" ;;
test) want="$build_pkgs $test_pkgs" ;;
*)
    echo "usage: $0 build|test" >&2
    exit 2
    ;;
esac

missing=""
for pkg in $want; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
# Node may come from Debian or elsewhere (nodesource): the commands are what matters.
if [ "${1:-build}" = test ] && ! command -v node >/dev/null 2>&1; then
    missing="$missing nodejs npm"
elif ! command -v npm >/dev/null 2>&1; then
    missing="$missing npm" # the demo page's socket.io-client (make www-assets)
fi

if [ -n "$missing" ]; then
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
fi

# From the lock file; again when a package the lock file names is missing (one was added).
if [ "${1:-build}" = test ] && { [ ! -d tests/clients/node_modules/ws ] ||
    [ ! -d tests/clients/node_modules/playwright-core ] ||
    [ ! -d tests/clients/node_modules/socket.io-client-v2 ]; }; then
    echo "eddy: installing the npm packages of tests/clients" >&2
    npm ci --prefix tests/clients --no-audit --no-fund >/dev/null
fi
if [ "${1:-build}" = test ] && { [ ! -d bench/scaleout/node_modules/@socket.io/redis-adapter ] ||
    [ ! -d bench/scaleout/node_modules/@socket.io/redis-emitter ]; }; then
    echo "eddy: installing the npm packages of bench/scaleout (tests/integration/test_scaleout_bench.py, test_scaleout_emitter_shard.py)" >&2
    npm ci --prefix bench/scaleout --no-audit --no-fund >/dev/null
fi
if [ "${1:-build}" = test ] && [ ! -d clients/js/node_modules/typescript ]; then
    echo "eddy: installing the npm dev packages of clients/js (eddy.js)" >&2
    npm ci --prefix clients/js --no-audit --no-fund >/dev/null
fi
