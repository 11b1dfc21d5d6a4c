#!/usr/bin/env bash
# The Debian package as a user outside this repository gets it (issue "Watch
# it, scrape it, install it", point 4): //:deb is installed with dpkg into a
# scratch root, the README's first program is built against it with plain g++
# and pkg-config, outside Bazel, linked both with the shared and the static
# library, and run; the programs it ships answer --help.
set -euo pipefail

ws="${TEST_SRCDIR}/${TEST_WORKSPACE}"
deb=$(ls "$ws"/relay-dev_*_amd64.deb)
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
root="$tmp/root"
fail() { echo "FAIL: $*" >&2; exit 1; }

# Install: a dpkg database of its own in the scratch root.
mkdir -p "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/info"
touch "$root/var/lib/dpkg/status"
dpkg --root="$root" --force-depends --force-not-root --no-triggers --log=/dev/null \
  -i "$deb" >"$tmp/dpkg.txt" 2>&1 || fail "dpkg -i: $(cat "$tmp/dpkg.txt")"
dpkg --root="$root" -s relay-dev | grep -q '^Status: install ok installed' ||
  fail "relay-dev is not installed: $(dpkg --root="$root" -s relay-dev 2>&1)"
dpkg-deb -f "$deb" Depends | grep -q 'libzmq5' || fail "Depends does not name libzmq5"
lib="$root/usr/lib/x86_64-linux-gnu"
for f in usr/include/relay/relay.h usr/include/relay/internal/codec.h \
  usr/lib/x86_64-linux-gnu/librelay.so.0 usr/lib/x86_64-linux-gnu/librelay.a \
  usr/lib/x86_64-linux-gnu/pkgconfig/relay.pc lib/systemd/system/relay-broker.service; do
  [[ -e "$root/$f" ]] || fail "the package has no /$f"
done

# The README's first program, exactly as the README shows it.
awk '/^```cpp$/ { getline; if ($0 == "// hello.cc") { on = 1 } }
     on && /^```$/ { exit }
     on { print }' "$ws/README.md" >"$tmp/hello.cc"
grep -q 'int main()' "$tmp/hello.cc" || fail "no first program found in README.md"

export PKG_CONFIG_PATH="$lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$root"
flags=$(pkg-config --cflags --libs relay) || fail "pkg-config knows no relay"
# shellcheck disable=SC2086  # the flags are meant to split into words
g++ -std=c++20 "$tmp/hello.cc" $flags -o "$tmp/hello" 2>"$tmp/cc.txt" ||
  fail "g++ with the shared library: $(cat "$tmp/cc.txt")"
out=$(cd "$tmp" && LD_LIBRARY_PATH="$lib" ./hello 2>"$tmp/run.txt") ||
  fail "hello exited $?: $(cat "$tmp/run.txt")"
# As the README says: the consumer's log record, written by the main process,
# then the sum.
[[ "$(tail -n 1 <<<"$out")" == "sum: 5050" ]] || fail "hello printed '$out', want 'sum: 5050'"
grep -q '\[hello\] \[info\] \[group-2\] (Consumer-0) consumer up' <<<"$out" ||
  fail "no log record from the consumer in '$out'"
LD_LIBRARY_PATH="$lib" ldd "$tmp/hello" | grep -q 'librelay.so.0 => '"$lib" ||
  fail "hello does not use the packaged librelay.so.0"

# The static library: no librelay.so needed at run time.
# shellcheck disable=SC2086
g++ -std=c++20 "$tmp/hello.cc" $(pkg-config --cflags relay) "$lib/librelay.a" \
  $(pkg-config --static --libs-only-l relay | sed 's/-lrelay//') -o "$tmp/hello-static" \
  2>"$tmp/cc.txt" || fail "g++ with the static library: $(cat "$tmp/cc.txt")"
ldd "$tmp/hello-static" | grep -q librelay && fail "the static build still needs librelay.so"
out=$(cd "$tmp" && ./hello-static 2>"$tmp/run.txt") || fail "hello-static exited $?"
[[ "$(tail -n 1 <<<"$out")" == "sum: 5050" ]] || fail "hello-static printed '$out'"

for p in relay-broker relay-monitor relay-keygen; do
  "$root/usr/bin/$p" --help >"$tmp/help.txt" 2>&1 || fail "$p --help exited $?"
  grep -qi "usage" "$tmp/help.txt" || fail "$p --help shows no usage"
done
echo "deb test passed"
