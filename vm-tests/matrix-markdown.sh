#!/usr/bin/env bash
# Renders a run-matrix results.tsv as the Markdown table of docs/kernels.md: one row per
# kernel and hook mode, one column per test (root_capture's three tests in one column).
#   vm-tests/matrix-markdown.sh [target/vm-matrix/results.tsv]
set -euo pipefail
tsv=${1:-target/vm-matrix/results.tsv}
awk -F'\t' '
NR == 1 { next }
{
  row = $1 " | " $2
  if (!(row in seen)) { seen[row] = 1; rows[++n] = row; accel[row] = $3; boot[row] = $4 }
  col = ($5 == "root_capture") ? "capture (3 tests)" : $6
  sub(/^root_e2e_/, "", col)
  if (!(col in cseen)) { cseen[col] = 1; cols[++m] = col }
  key = row SUBSEP col
  if ($7 == "pass") pass[key]++; else if ($7 == "fail") fail[key]++
  secs[row] += $8
}
END {
  printf "| kernel | hook mode |"
  for (j = 1; j <= m; j++) printf " %s |", cols[j]
  printf " boot | boot s | tests s |\n|---|---|"
  for (j = 1; j <= m; j++) printf "---|"
  printf "---|---|---|\n"
  for (i = 1; i <= n; i++) {
    r = rows[i]; printf "| %s |", r
    for (j = 1; j <= m; j++) {
      k = r SUBSEP cols[j]
      if (fail[k]) printf " **FAIL** (%d/%d) |", pass[k] + 0, pass[k] + fail[k]
      else if (pass[k]) printf " pass |"
      else printf " - |"
    }
    printf " %s | %s | %.0f |\n", accel[r], boot[r], secs[r]
  }
}' "$tsv"
