// The rank mapping and the enum spellings of ParallelLayout.
#include "cost_model/layout.h"

#include <algorithm>
#include <sstream>

#include "cost_model/error.h"
#include "cost_model/json_fields.h"

namespace sextant {

const char* to_string(Recompute r) {
  switch (r) {
    case Recompute::none: return "none";
    case Recompute::selective: return "selective";
    case Recompute::full: return "full";
  }
  return "?";
}

const char* to_string(Offload o) {
  switch (o) {
    case Offload::none: return "none";
    case Offload::optimizer: return "optimizer";
    case Offload::params: return "params";
  }
  return "?";
}

const char* to_string(Axis a) {
  switch (a) {
    case Axis::tp: return "tp";
    case Axis::dp: return "dp";
    case Axis::pp: return "pp";
  }
  return "?";
}

Recompute recompute_from_string(const std::string& text, const std::string& where) {
  for (Recompute r : {Recompute::none, Recompute::selective, Recompute::full})
    if (text == to_string(r)) return r;
  throw InputError(where, "recompute", "got \"" + text + "\"; allowed: none, selective, full");
}

Offload offload_from_string(const std::string& text, const std::string& where) {
  for (Offload o : {Offload::none, Offload::optimizer, Offload::params})
    if (text == to_string(o)) return o;
  throw InputError(where, "offload", "got \"" + text + "\"; allowed: none, optimizer, params");
}

namespace {
int64_t coord_of(const RankCoord& c, Axis a) {
  return a == Axis::tp ? c.tp : a == Axis::dp ? c.dp : c.pp;
}
void set_coord(RankCoord& c, Axis a, int64_t v) {
  (a == Axis::tp ? c.tp : a == Axis::dp ? c.dp : c.pp) = v;
}
}  // namespace

RankCoord rank_to_coord(const ParallelLayout& layout, int64_t rank) {
  RankCoord c;
  for (Axis a : layout.order) {
    set_coord(c, a, rank % layout.size(a));
    rank /= layout.size(a);
  }
  return c;
}

int64_t coord_to_rank(const ParallelLayout& layout, const RankCoord& coord) {
  int64_t rank = 0;
  for (int i = 2; i >= 0; --i) {
    Axis a = layout.order[static_cast<size_t>(i)];
    rank = rank * layout.size(a) + coord_of(coord, a);
  }
  return rank;
}

std::vector<int64_t> rank_group_of(const ParallelLayout& layout, Axis axis, int64_t rank) {
  RankCoord c = rank_to_coord(layout, rank);
  std::vector<int64_t> group;
  group.reserve(static_cast<size_t>(layout.size(axis)));
  for (int64_t i = 0; i < layout.size(axis); ++i) {
    set_coord(c, axis, i);
    group.push_back(coord_to_rank(layout, c));
  }
  return group;
}

std::vector<std::vector<int64_t>> rank_groups(const ParallelLayout& layout, Axis axis) {
  std::vector<std::vector<int64_t>> groups;
  for (int64_t rank = 0; rank < layout.world_size(); ++rank)
    if (coord_of(rank_to_coord(layout, rank), axis) == 0)
      groups.push_back(rank_group_of(layout, axis, rank));
  return groups;
}

namespace {
// The members of `rank`'s dp group whose dp coordinates satisfy keep(rank's coord, other's).
template <typename Keep>
std::vector<int64_t> dp_subgroup_of(const ParallelLayout& layout, int64_t rank, Keep keep) {
  const int64_t mine = rank_to_coord(layout, rank).dp;
  const std::vector<int64_t> dp_group = rank_group_of(layout, Axis::dp, rank);
  std::vector<int64_t> group;
  for (int64_t d = 0; d < layout.dp; ++d)
    if (keep(mine, d)) group.push_back(dp_group[static_cast<size_t>(d)]);
  return group;
}
template <typename GroupOf>
std::vector<std::vector<int64_t>> all_groups(const ParallelLayout& layout, GroupOf group_of) {
  std::vector<std::vector<int64_t>> groups;
  for (int64_t rank = 0; rank < layout.world_size(); ++rank) {
    std::vector<int64_t> g = group_of(layout, rank);
    if (g.front() == rank) groups.push_back(std::move(g));
  }
  return groups;
}
}  // namespace

std::vector<int64_t> ep_group_of(const ParallelLayout& layout, int64_t rank) {
  const int64_t ep = layout.ep;
  return dp_subgroup_of(layout, rank, [ep](int64_t mine, int64_t d) { return d / ep == mine / ep; });
}

std::vector<int64_t> expert_dp_group_of(const ParallelLayout& layout, int64_t rank) {
  const int64_t ep = layout.ep;
  return dp_subgroup_of(layout, rank, [ep](int64_t mine, int64_t d) { return d % ep == mine % ep; });
}

std::vector<std::vector<int64_t>> ep_groups(const ParallelLayout& layout) { return all_groups(layout, ep_group_of); }

std::vector<std::vector<int64_t>> expert_dp_groups(const ParallelLayout& layout) {
  return all_groups(layout, expert_dp_group_of);
}

nlohmann::json layout_to_json(const ParallelLayout& l) {
  std::string order = std::string(to_string(l.order[0])) + "-" + to_string(l.order[1]) + "-" +
                      to_string(l.order[2]);
  return {{"dp", l.dp},
          {"tp", l.tp},
          {"pp", l.pp},
          {"vpp", l.vpp},
          {"ep", l.ep},
          {"zero", l.zero},
          {"micro_batch", l.micro_batch},
          {"grad_accum", l.grad_accum},
          {"recompute", to_string(l.recompute)},
          {"sequence_parallel", l.sequence_parallel},
          {"offload", to_string(l.offload)},
          {"rank_order", order}};
}

ParallelLayout layout_from_json(const nlohmann::json& json, const std::string& where) {
  JsonFields f(json, where + ": layout");
  ParallelLayout l;
  l.dp = f.integer("dp", 1, 1 << 20);
  l.tp = f.integer("tp", 1, 1 << 20);
  l.pp = f.integer("pp", 1, 1 << 20);
  l.vpp = f.integer("vpp", 1, 1 << 10);
  l.ep = f.integer_or("ep", 1, 1, 1 << 20);
  if (l.dp % l.ep != 0)
    throw InputError(f.where(), "ep", "must divide dp = " + std::to_string(l.dp) + " (got " + std::to_string(l.ep) + ")");
  l.zero = static_cast<int>(f.integer("zero", 0, 3));
  l.micro_batch = f.integer("micro_batch", 1, int64_t{1} << 31);
  l.grad_accum = f.integer("grad_accum", 1, int64_t{1} << 31);
  l.recompute = recompute_from_string(f.string("recompute"), f.where());
  l.sequence_parallel = f.boolean_or("sequence_parallel", false);
  l.offload = offload_from_string(f.string("offload"), f.where());
  const std::string order = f.string_or("rank_order", "tp-dp-pp");
  bool matched = false;
  for (auto o : {std::array<Axis, 3>{Axis::tp, Axis::dp, Axis::pp}, std::array<Axis, 3>{Axis::tp, Axis::pp, Axis::dp},
                 std::array<Axis, 3>{Axis::dp, Axis::tp, Axis::pp}, std::array<Axis, 3>{Axis::dp, Axis::pp, Axis::tp},
                 std::array<Axis, 3>{Axis::pp, Axis::tp, Axis::dp}, std::array<Axis, 3>{Axis::pp, Axis::dp, Axis::tp}}) {
    if (order == std::string(to_string(o[0])) + "-" + to_string(o[1]) + "-" + to_string(o[2])) {
      l.order = o;
      matched = true;
    }
  }
  if (!matched) throw InputError(f.where(), "rank_order", "expected a permutation of tp-dp-pp, got \"" + order + "\"");
  return l;
}

std::string layout_to_string(const ParallelLayout& l) {
  std::ostringstream out;
  out << "dp=" << l.dp << " tp=" << l.tp << " pp=" << l.pp << " vpp=" << l.vpp;
  if (l.ep > 1) out << " ep=" << l.ep;
  out << " zero=" << l.zero << " mb=" << l.micro_batch << " ga=" << l.grad_accum
      << " rc=" << to_string(l.recompute) << " sp=" << (l.sequence_parallel ? 1 : 0)
      << " off=" << to_string(l.offload);
  return out.str();
}

}  // namespace sextant
