// Formatting of search results and the plan file.
#include "planner/plan_output.h"

#include <cstdio>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "cost_model/error.h"

namespace sextant {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

nlohmann::json candidate_to_json(const Candidate& c) {
  nlohmann::json j = {{"feasible", c.prediction.feasible},
                      {"layout", layout_to_json(c.layout)},
                      {"predicted", prediction_to_json(c.prediction)}};
  if (!c.prediction.feasible) j["reason"] = infeasible_reason(c.prediction);
  return j;
}

}  // namespace

nlohmann::json search_to_json(const SearchRequest& req, const SearchResult& res) {
  nlohmann::json candidates = nlohmann::json::array();
  for (const Candidate& c : res.candidates) candidates.push_back(candidate_to_json(c));
  return {{"model", {{"name", req.model.name}, {"params", req.model.total_params()},
                     {"seq_len", req.model.seq_len}}},
          {"cluster", {{"name", req.cluster.name}, {"gpus", req.gpus},
                       {"device", req.cluster.device.name}}},
          {"job", {{"global_batch", req.job.global_batch}, {"precision", to_string(req.job.precision)}}},
          {"search", {{"evaluated", res.evaluated}, {"feasible", res.feasible},
                      {"seconds", res.seconds}, {"fixed", req.fixed.text}}},
          {"cost_model_version", kCostModelVersion},
          {"candidates", candidates}};
}

std::string search_to_table(const SearchRequest& req, const SearchResult& res) {
  std::ostringstream out;
  const double params = static_cast<double>(req.model.total_params());
  out << req.model.name << " (" << std::fixed << std::setprecision(2)
      << (params >= 1e9 ? params / 1e9 : params / 1e6) << (params >= 1e9 ? "B" : "M") << " params, seq "
      << req.model.seq_len
      << ") on " << req.gpus << "x " << req.cluster.device.name << " (" << req.cluster.name
      << "), global batch " << req.job.global_batch << ", " << to_string(req.job.precision) << "\n";
  out << "searched " << res.evaluated << " layouts in " << std::setprecision(3) << res.seconds
      << " s, " << res.feasible << " fit in memory\n";
  if (res.feasible == 0) out << "no layout fits; the least memory-hungry ones:\n";
  out << "\n rank  dp  tp  pp  ep vpp zero   mb    ga recompute  sp   offload   step_s   tokens/s  "
         "TFLOP/s   MFU  mem_GiB\n";
  int rank = 1;
  for (const Candidate& c : res.candidates) {
    const ParallelLayout& l = c.layout;
    const Prediction& p = c.prediction;
    out << std::setw(5) << rank++ << std::setw(4) << l.dp << std::setw(4) << l.tp << std::setw(4)
        << l.pp << std::setw(4) << l.ep << std::setw(4) << l.vpp << std::setw(5) << l.zero
        << std::setw(5) << l.micro_batch << std::setw(6) << l.grad_accum << std::setw(10)
        << to_string(l.recompute) << std::setw(4) << (l.sequence_parallel ? "y" : "n")
        << std::setw(10) << to_string(l.offload) << std::setprecision(3) << std::setw(9)
        << p.time.step_s << std::setprecision(0) << std::setw(11) << p.tokens_per_s
        << std::setprecision(1) << std::setw(9) << p.model_tflops_per_gpu << std::setprecision(3)
        << std::setw(6) << p.mfu << std::setprecision(p.memory.peak_bytes < 10 * kGiB ? 3 : 1)
        << std::setw(9) << p.memory.peak_bytes / kGiB << (p.feasible ? "" : "  (does not fit)")
        << "\n";
  }
  if (!res.candidates.empty()) {
    const Prediction& p = res.candidates.front().prediction;
    const TimeBreakdown& t = p.time;
    const MemoryBreakdown& m = p.memory;
    out << std::setprecision(3) << "\nbest: step " << t.step_s << " s";
    if (t.step_s != t.uncalibrated_step_s) out << " calibrated, from " << t.uncalibrated_step_s << " s";
    out << " = compute " << t.compute_s << " + tp comm " << t.tp_comm_s << " + pp p2p "
        << t.pp_p2p_s;
    if (t.ep_comm_s > 0) out << " + ep all-to-all " << t.ep_comm_s;
    out << " + bubble " << t.bubble_s << " + dp comm (exposed) " << t.dp_comm_s << " + optimizer "
        << t.optimizer_s << " + offload " << t.offload_s << "\n";
    out << std::setprecision(2) << "      memory (stage " << m.stage << ") " << m.peak_bytes / kGiB
        << " GiB = params " << m.params_bytes / kGiB << " + grads " << m.grads_bytes / kGiB
        << " + optimizer " << m.optimizer_bytes / kGiB << " + activations "
        << m.activations_bytes / kGiB << " + comm buffers " << m.comm_buffer_bytes / kGiB
        << " + workspace " << m.workspace_bytes / kGiB << " + reserved " << m.reserved_bytes / kGiB
        << "\n";
    if (!p.feasible) out << "      " << infeasible_reason(p) << "\n";
    const MemoryBreakdown& e = p.executor_memory;
    if (e.peak_bytes > 0 && e.peak_bytes != m.peak_bytes)
      out << std::setprecision(2) << "      sextant execute allocates " << e.peak_bytes / kGiB << " GiB (stage "
          << e.stage << ")" << (e.peak_bytes > p.capacity_bytes ? ", more than the device holds: plan with "
                                                                   "--memory-model sextant to run it with sextant execute"
                                                                 : "")
          << "\n";
  }
  return out.str();
}

std::string search_to_csv(const SearchResult& res) {
  std::ostringstream out;
  out << "rank,feasible,dp,tp,pp,ep,vpp,zero,micro_batch,grad_accum,recompute,sequence_parallel,"
         "offload,step_time_s,tokens_per_s,model_tflops_per_gpu,hardware_tflops_per_gpu,mfu,"
         "params_bytes,grads_bytes,optimizer_bytes,activations_bytes,peak_bytes\n";
  int rank = 1;
  out << std::setprecision(10);
  for (const Candidate& c : res.candidates) {
    const ParallelLayout& l = c.layout;
    const Prediction& p = c.prediction;
    out << rank++ << ',' << (p.feasible ? "true" : "false") << ',' << l.dp << ',' << l.tp << ','
        << l.pp << ',' << l.ep << ',' << l.vpp << ',' << l.zero << ',' << l.micro_batch << ','
        << l.grad_accum << ',' << to_string(l.recompute) << ','
        << (l.sequence_parallel ? "true" : "false") << ',' << to_string(l.offload) << ','
        << p.time.step_s << ',' << p.tokens_per_s << ',' << p.model_tflops_per_gpu << ','
        << p.hardware_tflops_per_gpu << ',' << p.mfu << ',' << p.memory.params_bytes << ','
        << p.memory.grads_bytes << ',' << p.memory.optimizer_bytes << ','
        << p.memory.activations_bytes << ',' << p.memory.peak_bytes << '\n';
  }
  return out.str();
}

void write_file_atomically(const std::string& path, const std::string& text, const std::string& field) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw InputError(field, path, "cannot open for writing");
    out << text;
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      throw InputError(field, path, "write failed");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw InputError(field, path, "cannot replace the file");
  }
}

}  // namespace sextant
