#!/bin/bash
# Issue 20's whole-process numbers: `orbital lineage --downstream` (every
# model's lineage) cold and warm, and `orbital docs`, for two builds in
# alternating rounds, each round in a fresh copy of PROJECT (no target/).
#   docs/bench_lineage_docs.sh NEW_ORBITAL BASE_ORBITAL PROJECT [ROUNDS]
set -euo pipefail
new=$(realpath "$1"); base=$(realpath "$2"); project=$(realpath "$3"); rounds=${4:-2}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for round in $(seq "$rounds"); do
  order="new base"; [ $((round % 2)) = 0 ] && order="base new"
  for build in $order; do
    binary=$new; [ "$build" = base ] && binary=$base
    rm -rf "$scratch/copy"; cp -r "$project" "$scratch/copy"; rm -rf "$scratch/copy/target"
    cd "$scratch/copy"
    for step in "lineage-cold lineage raw_events.amount --downstream" \
                "lineage-warm lineage raw_events.amount --downstream" \
                "docs-warm docs"; do
      set -- $step; name=$1; shift
      /usr/bin/time -f "$round $build $name %e s %M KB" "$binary" "$@" 2>&1 >/dev/null | tail -1
    done
    if [ "$build" = new ]; then
      ORBITAL_LOG=debug "$binary" lineage raw_events.amount --downstream 2>&1 >/dev/null \
        | sed 's/\x1b\[[0-9;]*m//g' | grep "column lineage" || true
    fi
    cd - >/dev/null
  done
done
