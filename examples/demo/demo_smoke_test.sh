#!/usr/bin/env bash
# Smoke test of the demo program: a clean run writes one line per item and
# exits 0; a failing actor makes it exit 1 naming the actor; bad usage exits 2.
set -euo pipefail

demo="${TEST_SRCDIR}/${TEST_WORKSPACE}/examples/demo/demo"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
fail() { echo "FAIL: $*" >&2; exit 1; }

# A clean run, stdout not a terminal: plain progress lines and a summary.
"$demo" --items 5000 --producers 2 --prep 3 --post 2 --maxsize 100 \
  --out "$tmp/results.txt" >"$tmp/out.txt" 2>"$tmp/err.txt" ||
  fail "clean run exited $?: $(cat "$tmp/err.txt")"
[[ "$(wc -l <"$tmp/results.txt")" -eq 5000 ]] || fail "expected 5000 result lines"
[[ "$(cut -d' ' -f1 "$tmp/results.txt" | sort -n | uniq | wc -l)" -eq 5000 ]] ||
  fail "expected 5000 distinct items"
[[ "$(cut -d' ' -f1 "$tmp/results.txt" | sort -n | tail -1)" -eq 4999 ]] ||
  fail "expected items 0..4999"
grep -q 'consumer 5000/5000 .* done$' "$tmp/out.txt" || fail "no final progress line"
grep -q '^demo: 5000 lines in ' "$tmp/out.txt" || fail "no summary"
if grep -q $'\x1b' "$tmp/out.txt"; then fail "escape codes in non-terminal output"; fi

# A failing actor: exit 1, the error names group and actor.
status=0
"$demo" --items 5000 --fail-at 100 --out "$tmp/failed.txt" >/dev/null 2>"$tmp/err.txt" ||
  status=$?
[[ "$status" -eq 1 ]] || fail "--fail-at exited $status, want 1"
grep -q 'demo: actor failed: \[prep\] (Prep-[0-9]*) pid [0-9]*.*simulated failure at item 100' \
  "$tmp/err.txt" || fail "unexpected failure text: $(cat "$tmp/err.txt")"

# --dashboard: relay-monitor --http runs beside the run, and is gone after it.
"$demo" --items 2000 --dashboard 127.0.0.1:0 --linger 0 --out "$tmp/dash.txt" \
  >"$tmp/out.txt" 2>"$tmp/err.txt" || fail "--dashboard run exited $?: $(cat "$tmp/err.txt")"
[[ "$(wc -l <"$tmp/dash.txt")" -eq 2000 ]] || fail "--dashboard: expected 2000 result lines"
grep -q '^demo: dashboard at http://127.0.0.1:0/ (relay-monitor, pid [0-9]*)$' "$tmp/err.txt" ||
  fail "--dashboard: no monitor started: $(cat "$tmp/err.txt")"
grep -q '^relay-monitor: serving http://127.0.0.1:[1-9][0-9]*/$' "$tmp/err.txt" ||
  fail "--dashboard: the monitor did not serve: $(cat "$tmp/err.txt")"
pid="$(sed -n 's/^demo: dashboard at .*pid \([0-9]*\))$/\1/p' "$tmp/err.txt")"
if kill -0 "$pid" 2>/dev/null; then fail "--dashboard: relay-monitor (pid $pid) left running"; fi

# Usage.
"$demo" --help | grep -q '^Usage: demo \[OPTIONS\]' || fail "--help"
status=0
"$demo" --no-such-flag >/dev/null 2>"$tmp/err.txt" || status=$?
[[ "$status" -eq 2 ]] || fail "unknown flag exited $status, want 2"
grep -q "^demo: The following argument was not expected: --no-such-flag$" "$tmp/err.txt" ||
  fail "unknown flag text: $(cat "$tmp/err.txt")"
status=0
"$demo" --prep 0 >/dev/null 2>"$tmp/err.txt" || status=$?
[[ "$status" -eq 2 ]] || fail "--prep 0 exited $status, want 2"
grep -q "^demo: --prep: wants a whole number >= 1$" "$tmp/err.txt" ||
  fail "--prep 0 text: $(cat "$tmp/err.txt")"

echo "demo smoke test passed"
