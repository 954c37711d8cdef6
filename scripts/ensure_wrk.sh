#!/usr/bin/env bash
# The HTTP load figures (wbs_*, feedback_rps) drive the server with wrk, a C load generator from Debian: a
# Python client would take the CPU the server under test needs on a 2-core machine.
set -u
if command -v wrk >/dev/null 2>&1; then exit 0; fi
echo "Installing Debian's wrk for the HTTP load benchmarks..."
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -qq wrk >/dev/null 2>&1 || { $SUDO apt-get update -qq >/dev/null 2>&1; $SUDO apt-get install -y -qq wrk >/dev/null 2>&1; }
if ! command -v wrk >/dev/null 2>&1; then
  echo "warning: wrk is missing and apt-get could not install it (apt-get install wrk); the HTTP load figures fail."
fi
exit 0
