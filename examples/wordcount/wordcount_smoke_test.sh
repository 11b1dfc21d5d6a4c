#!/usr/bin/env bash
# Smoke test of the wordcount example: the built-in text's top words, counts
# and bad lines exactly; a generated file against sort | uniq -c; --help; bad
# usage exits 2; a missing file exits 1.
set -euo pipefail

wordcount="${TEST_SRCDIR}/${TEST_WORKSPACE}/examples/wordcount/wordcount"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
fail() { echo "FAIL: $*" >&2; exit 1; }
export LC_ALL=C

# The built-in text, counted by hand (and by tr | sort | uniq -c): lines 4
# and 9 hold a control character and do not parse.
"$wordcount" >"$tmp/out.txt" 2>"$tmp/err.txt" || fail "built-in run exited $?: $(cat "$tmp/err.txt")"
cat >"$tmp/want.txt" <<'WANT'
wordcount: 10 lines, 82 words, 27 distinct, 2 bad lines
     20 the
     10 fox
      7 dog
      5 and
      4 quick
      3 is
      3 lazy
      3 over
      3 runs
      2 a
bad line 4: control character 0x07
bad line 9: control character 0x1b
WANT
diff -u "$tmp/want.txt" "$tmp/out.txt" || fail "built-in text: unexpected output"

# More tokenizers and counters than the default, and --top 3.
"$wordcount" --tokenizers 4 --counters 5 --top 3 >"$tmp/out3.txt" 2>"$tmp/err.txt" ||
  fail "--top 3 run exited $?: $(cat "$tmp/err.txt")"
{ head -4 "$tmp/want.txt"; tail -2 "$tmp/want.txt"; } >"$tmp/want3.txt"
diff -u "$tmp/want3.txt" "$tmp/out3.txt" || fail "--top 3: unexpected output"

# A generated file: 3000 lines of 1-8 words out of 40 (six letters each,
# spelling the bits of a number), every 700th line bad.
awk 'BEGIN { for (i = 1; i <= 3000; ++i) { line = ""; n = i % 8
  for (j = 0; j <= n; ++j) { k = (i * 7 + j * 13 + int(i / 11)) % 40; w = ""
    for (b = 0; b < 6; ++b) { w = w substr("abcdefghijklmnopqrstuvwxyz", (int(k / (2 ^ b)) % 2) + 1 + b * 2, 1) }
    line = line (j ? " " : "") w }
  if (i % 700 == 0) line = line "\001"
  print line } }' >"$tmp/text.txt"
"$wordcount" --file "$tmp/text.txt" --tokenizers 3 --counters 4 --top 1000 >"$tmp/fout.txt" \
  2>"$tmp/err.txt" || fail "--file run exited $?: $(cat "$tmp/err.txt")"
grep -v $'\x01' "$tmp/text.txt" | tr -cs 'a-z' '\n' | grep -v '^$' | sort | uniq -c |
  sort -k1,1nr -k2,2 | awk '{ printf "%7d %s\n", $1, $2 }' >"$tmp/fwant_words.txt"
words="$(awk '{ s += $1 } END { print s }' "$tmp/fwant_words.txt")"
distinct="$(wc -l <"$tmp/fwant_words.txt")"
{
  echo "wordcount: 3000 lines, $words words, $distinct distinct, 4 bad lines"
  cat "$tmp/fwant_words.txt"
  for n in 700 1400 2100 2800; do echo "bad line $n: control character 0x01"; done
} >"$tmp/fwant.txt"
diff -u "$tmp/fwant.txt" "$tmp/fout.txt" || fail "--file: unexpected output"
[[ "$words" -gt 10000 ]] || fail "the generated file has only $words words"

# Usage.
"$wordcount" --help >"$tmp/help.txt" || fail "--help exited $?"
grep -q '^Usage: .*wordcount' "$tmp/help.txt" || fail "--help text"
grep -q -- '--counters' "$tmp/help.txt" || fail "--help lists no flags"
"$wordcount" --version | grep -q '^wordcount [0-9]' || fail "--version text"
for bad in "--no-such-flag" "--counters 0" "--top" "--tokenizers x"; do
  status=0
  # shellcheck disable=SC2086
  "$wordcount" $bad >/dev/null 2>"$tmp/err.txt" || status=$?
  [[ "$status" -eq 2 ]] || fail "'$bad' exited $status, want 2"
  grep -q '^wordcount: ' "$tmp/err.txt" || fail "'$bad': no error on stderr"
  grep -q '^Run with --help for more information.' "$tmp/err.txt" || fail "'$bad': no hint"
done
grep -q "no-such-flag" <("$wordcount" --no-such-flag 2>&1 || true) || fail "unknown flag text"
status=0
"$wordcount" --file "$tmp/no-such-file" >/dev/null 2>"$tmp/err.txt" || status=$?
[[ "$status" -eq 1 ]] || fail "a missing file exited $status, want 1"
grep -q "cannot read '$tmp/no-such-file'" "$tmp/err.txt" || fail "missing file text"

echo "wordcount smoke test passed"
