// ParallelLayout: how a training job is split — dp, tp, pp, vpp, ep, zero, micro-batch,
// accumulation, recompute, sequence parallel, offload — and the one pure mapping
// between a global rank and its (dp, pp, tp) coordinates.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sextant {

enum class Recompute { none, selective, full };
enum class Offload { none, optimizer, params };
enum class Axis { tp = 0, dp = 1, pp = 2 };

const char* to_string(Recompute r);
const char* to_string(Offload o);
const char* to_string(Axis a);
// Parse the --fix / JSON spellings; throw InputError naming `where` on anything else.
Recompute recompute_from_string(const std::string& text, const std::string& where);
Offload offload_from_string(const std::string& text, const std::string& where);

struct RankCoord {
  int64_t dp = 0, pp = 0, tp = 0;
  bool operator==(const RankCoord& o) const { return dp == o.dp && pp == o.pp && tp == o.tp; }
};

struct ParallelLayout {
  int64_t dp = 1, tp = 1, pp = 1, vpp = 1;
  // Expert parallelism (MoE): the experts split over ep ranks carved out of the dp group
  // (ep divides dp). The expert-data-parallel group, of size dp / ep, replicates each expert.
  int64_t ep = 1;
  int zero = 0;
  int64_t micro_batch = 1, grad_accum = 1;
  Recompute recompute = Recompute::none;
  bool sequence_parallel = false;
  Offload offload = Offload::none;
  // Axes from innermost (consecutive ranks) to outermost. Default as Megatron-LM: tp, dp, pp.
  std::array<Axis, 3> order = {Axis::tp, Axis::dp, Axis::pp};

  int64_t world_size() const { return dp * tp * pp; }
  int64_t size(Axis a) const { return a == Axis::tp ? tp : a == Axis::dp ? dp : pp; }
  int64_t global_batch() const { return dp * micro_batch * grad_accum; }
};

// The rank formula, for order (a0 innermost, a1, a2 outermost):
//   rank = c[a0] + size[a0] * (c[a1] + size[a1] * c[a2])
// With the default order tp-dp-pp: rank = tp_rank + tp * (dp_rank + dp * pp_rank).
RankCoord rank_to_coord(const ParallelLayout& layout, int64_t rank);
int64_t coord_to_rank(const ParallelLayout& layout, const RankCoord& coord);
// Every group along `axis`: the ranks that differ only in that coordinate, in
// coordinate order; groups listed by increasing lowest rank.
std::vector<std::vector<int64_t>> rank_groups(const ParallelLayout& layout, Axis axis);
// The group along `axis` that holds `rank`.
std::vector<int64_t> rank_group_of(const ParallelLayout& layout, Axis axis, int64_t rank);

// Expert groups, carved from each dp group (in dp-coordinate order) as Megatron-Core does:
// dp coordinate d is expert-data-parallel coordinate d / ep and expert coordinate d % ep.
// An ep group is ep consecutive dp coordinates; an expert-dp group takes every ep-th one.
std::vector<int64_t> ep_group_of(const ParallelLayout& layout, int64_t rank);
std::vector<int64_t> expert_dp_group_of(const ParallelLayout& layout, int64_t rank);
std::vector<std::vector<int64_t>> ep_groups(const ParallelLayout& layout);
std::vector<std::vector<int64_t>> expert_dp_groups(const ParallelLayout& layout);

nlohmann::json layout_to_json(const ParallelLayout& layout);
// Inverse of layout_to_json; InputError naming `where` and the field on bad values.
ParallelLayout layout_from_json(const nlohmann::json& json, const std::string& where);
std::string layout_to_string(const ParallelLayout& layout);  // one line: "dp=8 tp=8 ..."

}  // namespace sextant
