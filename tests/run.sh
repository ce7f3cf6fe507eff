#!/usr/bin/env bash
# The whole test suite, in the order CI runs it. Each step must pass; the first failure stops the run.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "1/5 the library is what nbdev_export writes from the notebooks"
before=$(mktemp -d)
cp -r surgdiff "$before/"
nbdev_export
if ! diff -r -q -x __pycache__ "$before/surgdiff" surgdiff; then
  echo "FAIL: surgdiff/ differs from the notebooks; edit nbs/ and run nbdev_export" >&2
  exit 1
fi
echo "in sync"

step "2/5 the notebooks are clean (nbdev_clean changes nothing)"
sum() { find nbs -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' -print0 | sort -z | xargs -0 sha1sum; }
s1=$(sum); nbdev_clean; s2=$(sum)
if [ "$s1" != "$s2" ]; then
  diff <(echo "$s1") <(echo "$s2") >&2 || true
  echo "FAIL: nbdev_clean changed the notebooks above; run nbdev_clean and commit" >&2
  exit 1
fi
echo "clean"

step "3/5 ruff: pyflakes rules and one statement per line, on the package, tests and benchmarks"
ruff check --no-cache --select F,E701,E702 surgdiff tests benchmarks

step "4/5 pytest"
python -m pytest tests/ -q -p no:cacheprovider

# Every notebook runs once, here (nbdev_test would run them a second time for nothing: issue #21).
step "5/5 every notebook runs top to bottom in a real kernel (nbclient; '#| slow' cells left out)"
python tests/execute_notebooks.py --json tests/output/notebook_times.json
