#!/usr/bin/env bash
# Every relay program has the same command line (bazel/cli.h): --help exits 0
# with a usage line, --version prints "NAME VERSION" and exits 0, and an
# unknown flag exits 2 with the same words. Usage: cli_test.sh VERSION.
set -euo pipefail

version="$1"
root="${TEST_SRCDIR}/${TEST_WORKSPACE}"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

for path in broker/relay-broker broker/relay-monitor workers/relay-keygen \
  examples/demo/demo examples/cluster/cluster examples/wordcount/wordcount tests/cluster_main; do
  bin="$root/$path"
  name="$(basename "$path")"

  status=0
  "$bin" --help >"$tmp/out.txt" 2>"$tmp/err.txt" || status=$?
  [[ "$status" -eq 0 ]] || fail "$name --help exited $status"
  grep -q "^Usage: $name " "$tmp/out.txt" || fail "$name --help: no usage line: $(cat "$tmp/out.txt")"
  grep -q -- "--version" "$tmp/out.txt" || fail "$name --help does not list --version"
  [[ ! -s "$tmp/err.txt" ]] || fail "$name --help wrote to stderr: $(cat "$tmp/err.txt")"

  status=0
  out="$("$bin" --version 2>"$tmp/err.txt")" || status=$?
  [[ "$status" -eq 0 ]] || fail "$name --version exited $status"
  [[ "$out" == "$name $version" ]] || fail "$name --version printed '$out', want '$name $version'"

  # With the positional arguments it needs: CLI11 reports a missing one first.
  positional=()
  case "$name" in
    relay-monitor) positional=(tcp://127.0.0.1:1) ;;
    relay-keygen) positional=("$tmp/never-written.key") ;;
  esac
  status=0
  "$bin" --no-such-flag "${positional[@]}" >"$tmp/out.txt" 2>"$tmp/err.txt" || status=$?
  [[ "$status" -eq 2 ]] || fail "$name --no-such-flag exited $status, want 2"
  expected="$name: The following argument was not expected: --no-such-flag
Run with --help for more information."
  [[ "$(cat "$tmp/err.txt")" == "$expected" ]] ||
    fail "$name --no-such-flag said: $(cat "$tmp/err.txt")"
  [[ ! -s "$tmp/out.txt" ]] || fail "$name --no-such-flag wrote to stdout"
done
[[ ! -e "$tmp/never-written.key" ]] || fail "relay-keygen wrote a key after bad usage"

# A flag without its value is bad usage too, in the same words.
status=0
"$root/broker/relay-broker" --listen >/dev/null 2>"$tmp/err.txt" || status=$?
[[ "$status" -eq 2 ]] || fail "relay-broker --listen (no value) exited $status, want 2"
grep -qx "relay-broker: --listen: 1 required URL missing" "$tmp/err.txt" ||
  fail "relay-broker --listen said: $(cat "$tmp/err.txt")"
# relay::init()'s flags reach the cluster example's parser only as relay's.
status=0
"$root/examples/cluster/cluster" --relay-worker >/dev/null 2>"$tmp/err.txt" || status=$?
[[ "$status" -eq 2 ]] || fail "cluster --relay-worker (no value) exited $status, want 2"
grep -qx "cluster: --relay-worker needs a value" "$tmp/err.txt" ||
  fail "cluster --relay-worker said: $(cat "$tmp/err.txt")"

if [[ "$failures" -ne 0 ]]; then
  echo "$failures failures" >&2
  exit 1
fi
echo "cli test passed"
