#!/usr/bin/env bash
# Browser tests use Debian's chromium (Playwright drives it; Playwright's own browser download is not used).
set -u
if [ -x /usr/bin/chromium ]; then exit 0; fi
echo "Installing Debian's chromium for the browser tests..."
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null 2>&1
$SUDO apt-get install -y -qq chromium >/dev/null 2>&1
if [ ! -x /usr/bin/chromium ]; then
  echo "error: /usr/bin/chromium is missing and apt-get could not install it (run: apt-get install chromium)."
  exit 1
fi
