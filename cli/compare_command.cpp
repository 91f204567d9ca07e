// `sextant compare`.
#include "cli/compare_command.h"

#include <cmath>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include <CLI/CLI.hpp>

#include "cost_model/error.h"
#include "cost_model/store.h"

namespace sextant {

void add_compare_command(CLI::App& app, CompareOptions& o) {
  CLI::App* cmd = app.add_subcommand("compare", "Predicted against measured, per run");
  cmd->add_option("--db", o.db, "SQLite store")->capture_default_str();
  cmd->add_option("--format", o.format, "table or json")->capture_default_str();
}

void run_compare(const CompareOptions& o, std::ostream& out) {
  if (o.format != "table" && o.format != "json")
    throw InputError("--format", "", "got \"" + o.format + "\"; allowed: table, json");
  if (!std::filesystem::exists(o.db)) throw InputError("--db", o.db, "no such store; run `sextant execute` first");
  const std::vector<RunComparison> runs = Store(o.db).compare_runs();
  auto error = [](double predicted, double measured) { return measured > 0 ? 100 * (predicted / measured - 1) : NAN; };
  if (o.format == "json") {
    nlohmann::json j = nlohmann::json::array();
    for (const RunComparison& r : runs)
      j.push_back({{"run", r.run_id}, {"created_at", r.created_at}, {"model", r.model_name},
                   {"cluster", r.cluster_name}, {"layout", nlohmann::json::parse(r.layout)},
                   {"cost_model_version", r.cost_model_version}, {"steps", r.steps}, {"final_loss", r.final_loss},
                   {"step_time_s", {{"predicted", r.predicted_step_time_s}, {"measured", r.measured_step_time_s},
                                    {"error_pct", error(r.predicted_step_time_s, r.measured_step_time_s)}}},
                   {"tokens_per_s", {{"predicted", r.predicted_tokens_per_s}, {"measured", r.measured_tokens_per_s},
                                     {"error_pct", error(r.predicted_tokens_per_s, r.measured_tokens_per_s)}}},
                   {"peak_bytes", {{"predicted", r.predicted_peak_bytes}, {"measured", r.measured_peak_bytes},
                                   {"error_pct", error(r.predicted_peak_bytes, r.measured_peak_bytes)}}}});
    out << j.dump(2) << "\n";
    return;
  }
  out << " run  model         layout                                   steps  step_s pred/meas    err  "
         "tokens/s pred/meas      err  peak_MiB pred/meas    err\n";
  for (const RunComparison& r : runs) {
    const nlohmann::json l = nlohmann::json::parse(r.layout);
    std::ostringstream layout;
    layout << "dp" << l["dp"] << " tp" << l["tp"] << " pp" << l["pp"] << " vpp" << l["vpp"] << " z" << l["zero"]
           << " mb" << l["micro_batch"] << " ga" << l["grad_accum"] << " " << l["recompute"].get<std::string>()
           << (l["sequence_parallel"].get<bool>() ? " sp" : "");
    out << std::setw(4) << r.run_id << "  " << std::left << std::setw(13) << r.model_name.substr(0, 13)
        << std::setw(41) << layout.str() << std::right << std::setw(5) << r.steps << std::fixed
        << std::setprecision(4) << std::setw(9) << r.predicted_step_time_s << std::setw(9) << r.measured_step_time_s
        << std::setprecision(1) << std::setw(7) << error(r.predicted_step_time_s, r.measured_step_time_s) << "%"
        << std::setprecision(0) << std::setw(11) << r.predicted_tokens_per_s << std::setw(10)
        << r.measured_tokens_per_s << std::setprecision(1) << std::setw(8)
        << error(r.predicted_tokens_per_s, r.measured_tokens_per_s) << "%" << std::setprecision(1) << std::setw(10)
        << r.predicted_peak_bytes / (1 << 20) << std::setw(9) << r.measured_peak_bytes / (1 << 20) << std::setw(7)
        << error(r.predicted_peak_bytes, r.measured_peak_bytes) << "%\n";
  }
  if (!runs.empty()) out << "cost model: " << runs.back().cost_model_version << "\n";
}

}  // namespace sextant
