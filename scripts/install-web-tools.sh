#!/usr/bin/env bash
# Installs what the web side needs on a fresh Debian machine: the npm packages of web/
# (project-local, exactly as web/package-lock.json pins them) and Debian's Chromium, which
# the browser tests drive through playwright-core (no browser download from elsewhere).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

if ! command -v npm >/dev/null 2>&1; then
    echo "installing Node.js and npm from Debian"
    apt_install nodejs npm
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    echo "web/ needs Node.js 20 or later; this machine has $(node --version)" >&2
    exit 1
fi
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
    echo "installing Debian's chromium"
    apt_install chromium
fi
"${CHROMIUM:-/usr/bin/chromium}" --version

# npm ci again only when the lock file changed since the last install.
lock=$(sha256sum web/package-lock.json | cut -d' ' -f1)
if [ "$(cat web/node_modules/.flotilla-lock 2>/dev/null)" != "$lock" ]; then
    (cd web && npm ci --no-audit --no-fund)
    echo "$lock" > web/node_modules/.flotilla-lock
fi
