// A stored run set against the prediction of the plan it executed: the plan is read with
// the plan file's one reader (planner/plan_file.h), the steps measured as the analysis
// defines (cost_model/run_analysis.h).
#pragma once

#include <vector>

#include "cost_model/run_analysis.h"
#include "cost_model/store.h"

namespace sextant {

// InputError naming the run when its stored plan cannot be read.
RunComparison compare_run(const StoredRun& run);
std::vector<RunComparison> compare_runs(const std::vector<StoredRun>& runs);

}  // namespace sextant
