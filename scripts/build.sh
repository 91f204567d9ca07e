#!/usr/bin/env bash
# Installs missing dependencies, configures build/ (Release) and builds the given targets
# (default: everything) with -j2.
#   scripts/build.sh sextant            the planner binary only: installs the planner's
#                                       packages, leaves SEXTANT_WITH_EXECUTOR as configured
#                                       (AUTO: the executor where LibTorch and MPI are found)
#   scripts/build.sh sextant-runtime    any other target, or none (everything): installs
#                                       LibTorch and OpenMPI too, and builds with the executor
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# Targets that need neither LibTorch nor MPI.
planner_targets=(sextant sextant_cli_commands sextant_planner sextant_profiles sextant_cost_model
                 cost_model_tests planner_tests cli_tests bench_search)
mode=planner
[ $# -eq 0 ] && mode=all
for t in "$@"; do
  [[ " ${planner_targets[*]} " == *" $t "* ]] || mode=all
done
flags=(-DCMAKE_BUILD_TYPE=Release)
if [ "$mode" = all ]; then
  "$root/scripts/deps.sh" all
  flags+=(-DSEXTANT_WITH_EXECUTOR=ON)  # fails clearly if LibTorch or MPI is still missing
else
  "$root/scripts/deps.sh" planner
fi
cmake -S "$root" -B "$root/build" "${flags[@]}" >/dev/null
if [ $# -gt 0 ]; then
  cmake --build "$root/build" -j2 --target "$@" >&2
else
  cmake --build "$root/build" -j2 >&2
fi
