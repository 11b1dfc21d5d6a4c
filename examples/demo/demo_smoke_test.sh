#!/usr/bin/env bash
# Smoke test of the demo program: a clean run writes one line per item and
# exits 0; a failing actor makes it exit 1 naming the actor; with --restart,
# crashing prep workers are restarted and the results file is the same as
# without crashes; bad usage exits 2. No run leaves a process behind.
set -euo pipefail

demo="${TEST_SRCDIR}/${TEST_WORKSPACE}/examples/demo/demo"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
fail() { echo "FAIL: $*" >&2; exit 1; }
# Fails if a process of the demo whose command line holds $1 (its --out path)
# is still there: actors are forked, so they share the demo's command line.
no_leftovers() {
  local p cmd
  for p in /proc/[0-9]*; do
    cmd="$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)" || continue
    if [[ "$cmd" == "$demo "*"$1"* ]]; then fail "left running: pid ${p#/proc/}: $cmd"; fi
  done
}

# A clean run, stdout not a terminal: plain progress lines and a summary.
"$demo" --items 5000 --producers 2 --prep 3 --post 2 --maxsize 100 \
  --out "$tmp/results.txt" >"$tmp/out.txt" 2>"$tmp/err.txt" ||
  fail "clean run exited $?: $(cat "$tmp/err.txt")"
[[ "$(wc -l <"$tmp/results.txt")" -eq 5000 ]] || fail "expected 5000 result lines"
[[ "$(cut -d' ' -f1 "$tmp/results.txt" | sort -n | uniq | wc -l)" -eq 5000 ]] ||
  fail "expected 5000 distinct items"
[[ "$(cut -d' ' -f1 "$tmp/results.txt" | sort -n | tail -1)" -eq 4999 ]] ||
  fail "expected items 0..4999"
[[ "$(cut -d' ' -f1 "$tmp/results.txt" | tr '\n' ' ')" == "$(seq -s' ' 0 4999) " ]] ||
  fail "results not in item order"
grep -q 'consumer 5000/5000 .* done$' "$tmp/out.txt" || fail "no final progress line"
grep -q '^demo: 5000 lines in ' "$tmp/out.txt" || fail "no summary"
if grep -q $'\x1b' "$tmp/out.txt"; then fail "escape codes in non-terminal output"; fi
if grep -q 'restart' "$tmp/out.txt"; then fail "restarts shown without any"; fi
no_leftovers "$tmp/results.txt"

# --restart --crash-every 500: a prep worker aborts on items 499, 999, ...,
# 4999, is restarted, and gets the item again (with others, some already sent
# on: duplicates the consumer drops). The run is bounded: a stall (seen in
# about half the runs with restarts, a runtime bug) fails here, not at the
# test's timeout. The
# results file is the clean run's, byte for byte; the summary and the last
# progress line count the restarts, from the run.
timeout -s KILL 30 "$demo" --items 5000 --producers 2 --prep 3 --post 2 --maxsize 100 \
  --restart --crash-every 500 --out "$tmp/crash.txt" >"$tmp/out.txt" 2>"$tmp/err.txt" ||
  fail "--restart --crash-every run exited $? (137: stalled, killed after 30 s): $(tail -3 "$tmp/out.txt")"
cmp "$tmp/results.txt" "$tmp/crash.txt" || fail "--restart: results differ from the clean run's"
summary="$(grep '^demo: .* prep crashes, ' "$tmp/out.txt")" || fail "no restart summary"
[[ "$summary" =~ ^demo:\ 10\ prep\ crashes,\ 10\ restarts,\ ([0-9]+)\ items\ delivered\ again\ to\ prep,\ ([0-9]+)\ duplicate\ results\ dropped$ ]] ||
  fail "unexpected restart summary: $summary"
again="${BASH_REMATCH[1]}"
dups="${BASH_REMATCH[2]}"
(( again >= 10 )) || fail "fewer items delivered again than crashes: $summary"
# prep is a worker: what a restarted one sends again is not delivered twice.
(( dups == 0 )) || fail "duplicates reached the consumer: $summary"
grep -q "; prep [0-9]*/5000 ([0-9.kM]* msg/s, 10 restarts);.* consumer $((5000 + dups))/5000 .* done$" \
  "$tmp/out.txt" || fail "--restart: no final progress line with the restarts: $(tail -1 "$tmp/out.txt")"
cat "$tmp/out.txt" "$tmp/err.txt" | grep -q '\[prep\] (Prep-[0-9]*) .*starting it again' ||
  fail "--restart: the restarts were not logged: $(cat "$tmp/err.txt")"
no_leftovers "$tmp/crash.txt"

# --crash-every without --restart: the first crash stops the run, exit 1,
# naming the actor.
status=0
"$demo" --items 5000 --crash-every 500 --out "$tmp/unsupervised.txt" >/dev/null \
  2>"$tmp/err.txt" || status=$?
[[ "$status" -eq 1 ]] || fail "--crash-every without --restart exited $status, want 1"
grep -q 'demo: actor failed: \[prep\] (Prep-[0-9]*) pid [0-9]*' "$tmp/err.txt" ||
  fail "--crash-every without --restart: unexpected failure text: $(cat "$tmp/err.txt")"
grep -q '^demo: --crash-every without --restart: ' "$tmp/err.txt" ||
  fail "--crash-every without --restart: no hint: $(cat "$tmp/err.txt")"
no_leftovers "$tmp/unsupervised.txt"

# A failing actor: exit 1, the error names group and actor.
status=0
"$demo" --items 5000 --fail-at 100 --out "$tmp/failed.txt" >/dev/null 2>"$tmp/err.txt" ||
  status=$?
[[ "$status" -eq 1 ]] || fail "--fail-at exited $status, want 1"
grep -q 'demo: actor failed: \[prep\] (Prep-[0-9]*) pid [0-9]*.*simulated failure at item 100' \
  "$tmp/err.txt" || fail "unexpected failure text: $(cat "$tmp/err.txt")"
no_leftovers "$tmp/failed.txt"

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
status=0
"$demo" --crash-every 0 >/dev/null 2>"$tmp/err.txt" || status=$?
[[ "$status" -eq 2 ]] || fail "--crash-every 0 exited $status, want 2"
"$demo" --help | grep -q 'exactly once' || fail "--help does not say what delivery is"

echo "demo smoke test passed"
