#!/usr/bin/env bash
# The browser check of report.html (tests/test_report_browser.py) drives Debian's chromium through playwright
# (playwright's own browser download is not reachable from CI). Install it with apt-get when we can; never fail
# the build: without it that one test is skipped, and this says so.
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then exit 0; fi
skip() { echo "chromium not installed ($1): the browser check will be skipped"; exit 0; }
command -v apt-get >/dev/null 2>&1 || skip "no apt-get"
[ "$(id -u)" = 0 ] || skip "apt-get needs root; run: sudo apt-get install -y chromium"
export DEBIAN_FRONTEND=noninteractive
LOG="${TMPDIR:-/tmp}/ensure_chromium.log"
echo "installing chromium with apt-get (for the browser check of report.html)"
apt-get install -y -q chromium >"$LOG" 2>&1 \
  || { apt-get update -q >>"$LOG" 2>&1 && apt-get install -y -q chromium >>"$LOG" 2>&1; } \
  || skip "apt-get install failed, see $LOG"
[ -x "$CHROMIUM" ] || skip "apt-get installed no $CHROMIUM"
echo "chromium installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
