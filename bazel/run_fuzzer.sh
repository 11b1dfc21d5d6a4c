#!/bin/sh
# Builds a libFuzzer target with --config=fuzz (clang-14, ASan, UBSan) and runs
# it for a while on a temporary copy of its seed corpus, so that the inputs it
# discovers never land in the source tree. Exits non-zero if the build fails or
# the fuzzer finds a crash, leak, timeout or out-of-memory; the reproducer is
# kept in the directory named at the end.
#
#   bazel/run_fuzzer.sh [seconds [target [corpus dir]]]
#   bazel/run_fuzzer.sh 30                      # //core:codec_fuzzer, 30 s
#
# Extra libFuzzer flags can be given in RELAY_FUZZ_FLAGS (e.g. "-jobs=2").
set -eu

seconds=${1:-30}
target=${2:-//core:codec_fuzzer}
cd "$(dirname "$0")/.."
case "$target" in
  //core:codec_fuzzer) corpus=${3:-core/internal/codec_fuzzer_corpus} ;;
  *) corpus=${3:?"give the seed corpus directory of $target"} ;;
esac

bazel build --config=fuzz "$target"
bin="$(bazel info --config=fuzz bazel-bin)/$(echo "$target" | sed 's|^//||; s|:|/|')"

work=$(mktemp -d "${TMPDIR:-/tmp}/relay-fuzz.XXXXXX")
mkdir "$work/corpus" "$work/artifacts"
cp -R "$corpus"/. "$work/corpus/"

status=0
# shellcheck disable=SC2086 # RELAY_FUZZ_FLAGS is a list of flags
"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" ${RELAY_FUZZ_FLAGS:-} "$work/corpus" || status=$?

if [ "$status" -ne 0 ] || [ -n "$(ls -A "$work/artifacts")" ]; then
  echo "run_fuzzer: $target failed (status $status); reproducer(s) in $work/artifacts:" >&2
  ls -l "$work/artifacts" >&2
  echo "replay: $bin $work/artifacts/<file>" >&2
  exit 1
fi
rm -rf "$work"
echo "run_fuzzer: $target ran ${seconds}s without a crash"
