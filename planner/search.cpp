// Search enumeration. Costs that do not depend on an axis are computed outside its
// loop: layer costs and stage tables per (tp, sp, recompute, micro-batch, pp, vpp),
// links per (tp, pp); the inner loops over zero and offload are arithmetic only.
#include "planner/search.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <sstream>
#include <tuple>

#include "cost_model/error.h"
#include "cost_model/topology.h"

namespace sextant {
namespace {

std::vector<int64_t> divisors(int64_t n) {
  std::vector<int64_t> out;
  for (int64_t d = 1; d * d <= n; ++d)
    if (n % d == 0) {
      out.push_back(d);
      if (d != n / d) out.push_back(n / d);
    }
  std::sort(out.begin(), out.end());
  return out;
}

template <typename T>
std::vector<T> pick(const std::optional<T>& fixed, std::vector<T> all) {
  if (fixed) return {*fixed};
  return all;
}

int64_t parse_int(const std::string& key, const std::string& value) {
  try {
    size_t used = 0;
    long long v = std::stoll(value, &used);
    if (used == value.size() && v >= 0) return v;
  } catch (const std::exception&) {
  }
  throw InputError("--fix", key, "expected a non-negative integer, got \"" + value + "\"");
}

// The slowest of the groups along an axis that hold 16 ranks spread evenly over the world
// (all of them for small worlds); groups of one axis are translates on a regular cluster.
GroupLinks slowest_group(const Topology& topo, const ParallelLayout& l, Axis axis) {
  const int64_t world = l.world_size(), samples = std::min<int64_t>(world, 16);
  GroupLinks worst;
  for (int64_t i = 0; i < samples; ++i) {
    GroupLinks links = topo.group_links(rank_group_of(l, axis, i * world / samples));
    if (i == 0 || links.bus_bw_bytes_per_s < worst.bus_bw_bytes_per_s) worst = links;
  }
  return worst;
}

// The slowest ep (all-to-all) or expert-data-parallel group, sampled as slowest_group does.
template <typename GroupOf>
GroupLinks slowest_expert_group(const Topology& topo, const ParallelLayout& l, GroupOf group_of) {
  const int64_t world = l.world_size(), samples = std::min<int64_t>(world, 16);
  GroupLinks worst;
  for (int64_t i = 0; i < samples; ++i) {
    GroupLinks links = topo.group_links(group_of(l, i * world / samples));
    if (i == 0 || links.bus_bw_bytes_per_s < worst.bus_bw_bytes_per_s) worst = links;
  }
  return worst;
}
GroupLinks ep_links_of(const Topology& topo, const ParallelLayout& l) {
  return l.ep > 1 ? slowest_expert_group(topo, l, ep_group_of) : GroupLinks{};
}
GroupLinks expert_dp_links_of(const Topology& topo, const ParallelLayout& l) {
  return l.ep > 1 && l.dp > l.ep ? slowest_expert_group(topo, l, expert_dp_group_of) : GroupLinks{};
}

// The link between pipeline stages 0 and 1 (send/recv of activations).
GroupLinks neighbour_stage_links(const Topology& topo, const ParallelLayout& l) {
  if (l.pp == 1) return GroupLinks{};
  const std::vector<int64_t> stages = rank_group_of(l, Axis::pp, 0);
  return topo.group_links({stages[0], stages[1]});
}

// Ranking: feasible first, then throughput, then less memory.
bool better(const Candidate& a, const Candidate& b) {
  if (a.prediction.feasible != b.prediction.feasible) return a.prediction.feasible;
  if (!a.prediction.feasible) return a.prediction.memory.peak_bytes < b.prediction.memory.peak_bytes;
  if (a.prediction.tokens_per_s != b.prediction.tokens_per_s)
    return a.prediction.tokens_per_s > b.prediction.tokens_per_s;
  return a.prediction.memory.peak_bytes < b.prediction.memory.peak_bytes;
}

}  // namespace

bool FixedAxes::complete() const {
  return dp && tp && pp && vpp && zero && micro_batch && recompute && sequence_parallel && offload;
}
// (ep is not required: a dense model has only ep = 1, and a complete pin of a MoE model
// without ep searches the ep values.)

FixedAxes parse_fixed_axes(const std::string& text) {
  FixedAxes f;
  f.text = text;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos)
      throw InputError("--fix", item, "expected key=value");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "dp") f.dp = parse_int(key, value);
    else if (key == "tp") f.tp = parse_int(key, value);
    else if (key == "pp") f.pp = parse_int(key, value);
    else if (key == "vpp") f.vpp = parse_int(key, value);
    else if (key == "ep")
      f.ep = parse_int(key, value);
    else if (key == "micro_batch") f.micro_batch = parse_int(key, value);
    else if (key == "grad_accum") f.grad_accum = parse_int(key, value);
    else if (key == "zero") {
      int64_t z = parse_int(key, value);
      if (z > 3) throw InputError("--fix", "zero", "ZeRO stage must be 0, 1, 2 or 3 (got " + value + ")");
      f.zero = static_cast<int>(z);
    } else if (key == "recompute") f.recompute = recompute_from_string(value, "--fix");
    else if (key == "offload") f.offload = offload_from_string(value, "--fix");
    else if (key == "sequence_parallel") {
      if (value != "true" && value != "false")
        throw InputError("--fix", key, "expected true or false, got \"" + value + "\"");
      f.sequence_parallel = value == "true";
    } else {
      throw InputError("--fix", key,
                       "unknown key; allowed: dp, tp, pp, vpp, ep, zero, micro_batch, grad_accum, "
                       "recompute, sequence_parallel, offload");
    }
    for (auto [name, v] : {std::pair<const char*, std::optional<int64_t>>{"dp", f.dp},
                           {"tp", f.tp},
                           {"pp", f.pp},
                           {"vpp", f.vpp},
                           {"ep", f.ep},
                           {"micro_batch", f.micro_batch},
                           {"grad_accum", f.grad_accum}})
      if (key == name && v && *v < 1) throw InputError("--fix", key, "must be at least 1");
  }
  return f;
}

namespace {

// Requests that cannot have any layout, said up front with the field to change.
void check_pinned_axes(const SearchRequest& req) {
  const FixedAxes& fix = req.fixed;
  const ModelSpec& model = req.model;
  const int64_t n = req.gpus;
  const int64_t pinned = fix.dp.value_or(1) * fix.tp.value_or(1) * fix.pp.value_or(1);
  if ((fix.dp && fix.tp && fix.pp && pinned != n) || n % pinned != 0)
    throw InputError("--fix", "dp*tp*pp",
                     "must divide (or, all three pinned, equal) the device count " + std::to_string(n) +
                         "; got " + std::to_string(pinned));
  if (fix.tp && model.num_heads % *fix.tp != 0)
    throw InputError("--fix", "tp", "must divide the number of attention heads " +
                                        std::to_string(model.num_heads));
  if (fix.pp && *fix.pp * fix.vpp.value_or(1) > model.num_layers)
    throw InputError("--fix", "pp", "pp*vpp must not exceed the number of layers " +
                                        std::to_string(model.num_layers));
  if (fix.offload == Offload::params && fix.zero && *fix.zero != 3)
    throw InputError("--fix", "offload", "params offload needs zero=3");
  if (fix.ep && *fix.ep > 1 && !model.is_moe())
    throw InputError("--fix", "ep",
                     "must be 1 for a dense model (" + model.name + " has no experts); got " +
                         std::to_string(*fix.ep));
  if (fix.ep && model.num_experts % *fix.ep != 0)
    throw InputError("--fix", "ep",
                     "must divide the number of experts " + std::to_string(model.num_experts) +
                         "; got " + std::to_string(*fix.ep));
  if (fix.ep && fix.dp && *fix.dp % *fix.ep != 0)
    throw InputError("--fix", "ep",
                     "must divide dp " + std::to_string(*fix.dp) +
                         " (experts are carved out of "
                         "the data-parallel ranks); got " +
                         std::to_string(*fix.ep));
  if (fix.ep && (n / (fix.tp.value_or(1) * fix.pp.value_or(1))) % *fix.ep != 0)
    throw InputError("--fix", "ep",
                     "must divide dp = devices / (tp*pp), which it cannot with " +
                         std::to_string(n) + " devices; got " + std::to_string(*fix.ep));
}

// ep sizes for a data-parallel size dp: the divisors of dp that divide the number of
// experts (1 only for a dense model).
std::vector<int64_t> ep_sizes(const SearchRequest& req, int64_t dp) {
  if (req.fixed.ep)
    return dp % *req.fixed.ep == 0 ? std::vector<int64_t>{*req.fixed.ep} : std::vector<int64_t>{};
  std::vector<int64_t> out;
  for (int64_t e : divisors(dp))
    if (req.model.num_experts % e == 0) out.push_back(e);
  return out;
}

// tp sizes that split heads, key/value heads and the FFN evenly, within a node unless pinned.
std::vector<int64_t> tp_sizes(const SearchRequest& req) {
  const ModelSpec& m = req.model;
  std::vector<int64_t> out;
  for (int64_t t : divisors(req.gpus))
    if (m.num_heads % t == 0 && m.ffn_hidden_size % t == 0 &&
        (m.num_kv_heads % t == 0 || t % m.num_kv_heads == 0) &&
        (req.fixed.tp || t <= req.cluster.devices_per_node))
      out.push_back(t);
  return pick(req.fixed.tp, out);
}

// The best k candidates (and, until one fits, the k least memory-hungry), with counts.
class Collector {
 public:
  explicit Collector(int64_t k) : k_(static_cast<size_t>(std::max<int64_t>(1, k))) {}
  void add(Candidate&& c) {
    ++result_.evaluated;
    if (c.prediction.feasible) {
      ++result_.feasible;
      keep(top_, std::move(c));
    } else if (top_.empty()) {
      keep(least_memory_, std::move(c));
    }
  }
  SearchResult finish() {
    result_.candidates = top_.empty() ? std::move(least_memory_) : std::move(top_);
    return std::move(result_);
  }
  int64_t evaluated() const { return result_.evaluated; }

 private:
  void keep(std::vector<Candidate>& list, Candidate&& c) {
    if (list.size() == k_ && !better(c, list.back())) return;
    list.insert(std::upper_bound(list.begin(), list.end(), c, better), std::move(c));
    if (list.size() > k_) list.pop_back();
  }
  size_t k_;
  std::vector<Candidate> top_, least_memory_;
  SearchResult result_;
};

// Every layout with this dp × tp × pp × ep shape.
void search_shape(const SearchRequest& req, const ModelGraph& graph, const Topology& topo,
                  const ParallelLayout& shape, Collector& out) {
  const ModelSpec& model = req.model;
  const FixedAxes& fix = req.fixed;
  const int64_t per_replica = req.job.global_batch / shape.dp;
  const GroupLinks tp_links = slowest_group(topo, shape, Axis::tp);
  const GroupLinks dp_links = slowest_group(topo, shape, Axis::dp);
  const GroupLinks pp_links = neighbour_stage_links(topo, shape);
  const GroupLinks ep_links = ep_links_of(topo, shape);
  const GroupLinks expert_dp_links = expert_dp_links_of(topo, shape);
  for (int64_t vpp : pick(fix.vpp, {1, 2, 3, 4, 6, 8})) {
    if ((vpp > 1 && shape.pp == 1) || shape.pp * vpp > model.num_layers) continue;
    for (int64_t mb : pick(fix.micro_batch, divisors(per_replica))) {
      const int64_t m = per_replica / mb;
      if (per_replica % mb != 0 || (fix.grad_accum && *fix.grad_accum != m)) continue;
      if (vpp > 1 && m % shape.pp != 0) continue;
      for (bool sp : pick(fix.sequence_parallel, {false, true})) {
        if (sp && shape.tp == 1 && !fix.sequence_parallel) continue;
        for (Recompute rc : pick(fix.recompute, {Recompute::none, Recompute::selective, Recompute::full})) {
          // Flash attention never stores the scores: selective recompute would equal none.
          if (rc == Recompute::selective && req.job.flash_attention && !fix.recompute) continue;
          const LayerContext ctx{&model,
                                 &req.cluster.device,
                                 req.job.precision,
                                 mb,
                                 shape.tp,
                                 sp,
                                 rc,
                                 req.job.flash_attention,
                                 tp_links,
                                 req.job.megatron_memory,
                                 shape.ep,
                                 ep_links};
          const auto table = std::make_shared<const StageTable>(build_stage_table(graph, ctx, shape.pp, vpp, pp_links));
          for (int zero : pick(fix.zero, {0, 1, 2, 3})) {
            if (zero > 0 && shape.dp == 1 && !fix.zero) continue;  // nothing to shard over
            for (Offload off : pick(fix.offload, {Offload::none, Offload::optimizer, Offload::params})) {
              if (off == Offload::params && zero != 3) continue;
              if (off != Offload::none && req.cluster.pcie_bw_bytes_per_s <= 0) continue;
              ParallelLayout l = shape;
              l.vpp = vpp;
              l.micro_batch = mb;
              l.grad_accum = m;
              l.sequence_parallel = sp;
              l.recompute = rc;
              l.zero = zero;
              l.offload = off;
              Prediction p =
                  predict(req.cluster, req.job, model, l, *table, dp_links, 0.0, expert_dp_links);
              out.add(Candidate{l, req.calibration ? calibrated(p, *req.calibration) : std::move(p), table});
            }
          }
        }
      }
    }
  }
}

LayerContext layer_context(const SearchRequest& req, const Topology& topo, const ParallelLayout& l,
                           bool megatron_memory) {
  return LayerContext{&req.model,
                      &req.cluster.device,
                      req.job.precision,
                      l.micro_batch,
                      l.tp,
                      l.sequence_parallel,
                      l.recompute,
                      req.job.flash_attention,
                      slowest_group(topo, l, Axis::tp),
                      megatron_memory,
                      l.ep,
                      ep_links_of(topo, l)};
}

// The final candidates predicted again with their pipeline walked on the schedule table
// (the closed form ranked them; on stages that differ it can be a little off), re-ranked.
// Under the Megatron-LM memory model each also gets the executor's own peak, from a stage
// table built with the executor's accounting.
void walk_pipelines(const SearchRequest& req, const Topology& topo, const ModelGraph& graph,
                    std::vector<Candidate>& candidates) {
  for (Candidate& c : candidates) {
    // One stage: the walk is the closed form (m·stage), summed in another order.
    const double walked_s = c.layout.pp > 1 ? walked_pipeline_s(*c.table, c.layout.grad_accum) : 0.0;
    Prediction p = predict(req.cluster, req.job, req.model, c.layout, *c.table,
                           slowest_group(topo, c.layout, Axis::dp), walked_s,
                           expert_dp_links_of(topo, c.layout));
    if (req.job.megatron_memory) {
      JobSpec executor_job = req.job;
      executor_job.megatron_memory = false;
      const StageTable executor_table =
          build_stage_table(graph, layer_context(req, topo, c.layout, false), c.layout.pp, c.layout.vpp,
                            neighbour_stage_links(topo, c.layout));
      p.executor_memory = predict_memory(req.cluster, executor_job, c.layout, executor_table);
    }
    c.prediction = req.calibration ? calibrated(p, *req.calibration) : std::move(p);
  }
  std::stable_sort(candidates.begin(), candidates.end(), better);
}

}  // namespace

Candidate evaluate_layout(const SearchRequest& req, const ParallelLayout& l) {
  const Topology topo(req.cluster, l.world_size());
  const ModelGraph graph(req.model);
  const LayerContext ctx = layer_context(req, topo, l, req.job.megatron_memory);
  Candidate c{l, {}, std::make_shared<const StageTable>(
                         build_stage_table(graph, ctx, l.pp, l.vpp, neighbour_stage_links(topo, l)))};
  std::vector<Candidate> one{c};
  walk_pipelines(req, topo, graph, one);
  return one.front();
}

SearchResult search(const SearchRequest& req) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t n = req.gpus;
  Topology topo(req.cluster, n);
  check_pinned_axes(req);
  const ModelGraph graph(req.model);
  Collector collector(req.top_k);
  for (int64_t tp : tp_sizes(req)) {
    for (int64_t pp : pick(req.fixed.pp, divisors(n / tp))) {
      if (pp > req.model.num_layers || (n / tp) % pp != 0) continue;
      ParallelLayout shape;
      shape.dp = n / (tp * pp);
      shape.tp = tp;
      shape.pp = pp;
      if ((req.fixed.dp && *req.fixed.dp != shape.dp) || req.job.global_batch % shape.dp != 0) continue;
      for (int64_t ep : ep_sizes(req, shape.dp)) {
        shape.ep = ep;
        search_shape(req, graph, topo, shape, collector);
      }
    }
  }
  if (collector.evaluated() == 0)
    throw InputError(req.fixed.text.empty() ? "--gpus" : "--fix", "",
                     "no layout divides: check --global-batch (" + std::to_string(req.job.global_batch) +
                         ") against dp, and tp against the heads (" + std::to_string(req.model.num_heads) + ")");
  SearchResult result = collector.finish();
  walk_pipelines(req, topo, graph, result.candidates);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace sextant
