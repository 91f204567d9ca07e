// MpiComm and the construction of the tp, dp, pp, embedding, ep and expert-dp groups.
#include "executor/comm.h"

#include <limits>

#include "executor/trace_recorder.h"

namespace sextant {
namespace {

MPI_Datatype mpi_type(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat: return MPI_FLOAT;
    case torch::kDouble: return MPI_DOUBLE;
    case torch::kLong: return MPI_INT64_T;
    case torch::kInt: return MPI_INT32_T;
    case torch::kByte: return MPI_UINT8_T;
    case torch::kBFloat16:
    case torch::kHalf: return MPI_UINT16_T;  // moved as bits; reductions widen first (below)
    default:
      throw CommError(std::string("MpiComm: unsupported dtype ") + std::string(c10::toString(t.scalar_type())) +
                      " (CPU collectives move fp32, fp64, bf16, fp16 and integers)");
  }
}

// MPI cannot add 16-bit floats: they are reduced in fp32 and rounded once at the end.
bool is_16bit_float(const torch::Tensor& t) {
  return t.scalar_type() == torch::kBFloat16 || t.scalar_type() == torch::kHalf;
}

void require_contiguous_cpu(const torch::Tensor& t, const char* what) {
  if (!t.is_contiguous() || !t.device().is_cpu())
    throw CommError(std::string("MpiComm: ") + what + " needs a contiguous CPU tensor");
}

int count_of(const torch::Tensor& t) {
  if (t.numel() > std::numeric_limits<int>::max()) throw CommError("MpiComm: message over 2^31 elements");
  return static_cast<int>(t.numel());
}

}  // namespace

void mpi_check(int code, const char* what, const char* file, int line) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  throw CommError(std::string(file) + ":" + std::to_string(line) + ": rank " + std::to_string(rank) + ": " +
                  what + " failed: " + std::string(text, static_cast<size_t>(length)));
}

MpiComm::MpiComm(MPI_Comm comm) : comm_(comm) {
  MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  MPI_CHECK(MPI_Comm_size(comm_, &size_));
}

MpiComm::~MpiComm() {
  if (!pending_.empty()) MPI_Waitall(static_cast<int>(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE);
  if (comm_ != MPI_COMM_WORLD && comm_ != MPI_COMM_SELF) MPI_Comm_free(&comm_);
}

void MpiComm::all_reduce(torch::Tensor& t) { all_reduce_with(t, MPI_SUM, "all_reduce"); }

void MpiComm::all_reduce_max(torch::Tensor& t) { all_reduce_with(t, MPI_MAX, "all_reduce_max"); }

void MpiComm::all_reduce_with(torch::Tensor& t, MPI_Op op, const char* what) {
  require_contiguous_cpu(t, what);
  if (size_ == 1) return;
  if (is_16bit_float(t)) {
    torch::Tensor wide = t.to(torch::kFloat);
    all_reduce_with(wide, op, what);
    t.copy_(wide);
    return;
  }
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), count_of(t), mpi_type(t), op, comm_));
}

void MpiComm::reduce_scatter(const torch::Tensor& in, torch::Tensor& out) {
  require_contiguous_cpu(in, "reduce_scatter");
  require_contiguous_cpu(out, "reduce_scatter");
  if (in.numel() != out.numel() * size_) throw CommError("reduce_scatter: input must be size() x output");
  if (size_ == 1) {
    out.copy_(in);
    return;
  }
  if (is_16bit_float(in)) {
    torch::Tensor wide = torch::empty({out.numel()}, torch::kFloat);
    reduce_scatter(in.to(torch::kFloat), wide);
    out.copy_(wide.view(out.sizes()));
    return;
  }
  MPI_CHECK(MPI_Reduce_scatter_block(in.data_ptr(), out.data_ptr(), count_of(out), mpi_type(in), MPI_SUM, comm_));
}

void MpiComm::all_gather(const torch::Tensor& in, torch::Tensor& out) {
  require_contiguous_cpu(in, "all_gather");
  require_contiguous_cpu(out, "all_gather");
  if (out.numel() != in.numel() * size_) throw CommError("all_gather: output must be size() x input");
  if (size_ == 1) {
    out.copy_(in.view_as(out));
    return;
  }
  MPI_CHECK(MPI_Allgather(in.data_ptr(), count_of(in), mpi_type(in), out.data_ptr(), count_of(in), mpi_type(out), comm_));
}

void MpiComm::broadcast(torch::Tensor& t, int root) {
  require_contiguous_cpu(t, "broadcast");
  if (size_ == 1) return;
  MPI_CHECK(MPI_Bcast(t.data_ptr(), count_of(t), mpi_type(t), root, comm_));
}

namespace {

// MPI's int counts and displacements, in elements, of rows of `row_elements` each.
std::vector<int> element_counts(const std::vector<int64_t>& rows, int64_t row_elements, std::vector<int>& displs) {
  std::vector<int> counts;
  displs.clear();
  int64_t at = 0;
  for (int64_t r : rows) {
    const int64_t n = r * row_elements;
    if (r < 0 || at + n > std::numeric_limits<int>::max()) throw CommError("MpiComm: all_to_all counts out of range");
    counts.push_back(static_cast<int>(n));
    displs.push_back(static_cast<int>(at));
    at += n;
  }
  return counts;
}

}  // namespace

void check_all_to_all(const torch::Tensor& in, const std::vector<int64_t>& send_rows, const torch::Tensor& out,
                      const std::vector<int64_t>& recv_rows, int peers) {
  if (static_cast<int>(send_rows.size()) != peers || static_cast<int>(recv_rows.size()) != peers)
    throw CommError("all_to_all: one count per peer");
  if (in.dim() < 1 || out.dim() < 1 || in.sizes().slice(1) != out.sizes().slice(1) ||
      in.scalar_type() != out.scalar_type())
    throw CommError("all_to_all: input and output need one row shape and dtype");
  int64_t sent = 0, received = 0;
  for (int64_t r : send_rows) sent += r;
  for (int64_t r : recv_rows) received += r;
  if (sent != in.size(0) || received != out.size(0))
    throw CommError("all_to_all: counts must add up to the rows of input and output");
}

void MpiComm::all_to_all(const torch::Tensor& in, const std::vector<int64_t>& send_rows, torch::Tensor& out,
                         const std::vector<int64_t>& recv_rows) {
  require_contiguous_cpu(in, "all_to_all");
  require_contiguous_cpu(out, "all_to_all");
  check_all_to_all(in, send_rows, out, recv_rows, size_);
  const int64_t row_elements = c10::multiply_integers(in.sizes().slice(1));
  std::vector<int> send_displs, recv_displs;
  const std::vector<int> send_counts = element_counts(send_rows, row_elements, send_displs);
  const std::vector<int> recv_counts = element_counts(recv_rows, row_elements, recv_displs);
  MPI_CHECK(MPI_Alltoallv(in.data_ptr(), send_counts.data(), send_displs.data(), mpi_type(in), out.data_ptr(),
                          recv_counts.data(), recv_displs.data(), mpi_type(out), comm_));
}

// Drops the sends MPI reports complete, and their tensors, so a pipeline stage holds only
// the sends its neighbour has not received yet rather than every send of the step.
void MpiComm::reap_sends() {
  size_t kept = 0;
  for (size_t i = 0; i < pending_.size(); ++i) {
    int done = 0;
    MPI_CHECK(MPI_Test(&pending_[i], &done, MPI_STATUS_IGNORE));
    if (done) continue;
    pending_[kept] = pending_[i];
    in_flight_[kept] = in_flight_[i];
    ++kept;
  }
  pending_.resize(kept);
  in_flight_.resize(kept);
}

void MpiComm::send(const torch::Tensor& t, int peer, int tag) {
  require_contiguous_cpu(t, "send");
  reap_sends();
  pending_.emplace_back();
  in_flight_.push_back(t);
  MPI_CHECK(MPI_Isend(t.data_ptr(), count_of(t), mpi_type(t), peer, tag, comm_, &pending_.back()));
}

void MpiComm::recv(torch::Tensor& t, int peer, int tag) {
  require_contiguous_cpu(t, "recv");
  MPI_CHECK(MPI_Recv(t.data_ptr(), count_of(t), mpi_type(t), peer, tag, comm_, MPI_STATUS_IGNORE));
  reap_sends();
}

void MpiComm::wait_sends() {
  if (!pending_.empty())
    MPI_CHECK(MPI_Waitall(static_cast<int>(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE));
  pending_.clear();
  in_flight_.clear();
}

void MpiComm::barrier() { MPI_CHECK(MPI_Barrier(comm_)); }

namespace {

// Ranks that share every coordinate but `axis` form a group; color them by the rank whose
// `axis` coordinate is 0, order them by their `axis` coordinate.
std::unique_ptr<Comm> split_along(const ParallelLayout& l, const RankCoord& c, Axis axis, const CommSplit& split) {
  RankCoord base = c;
  int key = 0;
  if (axis == Axis::tp) key = static_cast<int>(std::exchange(base.tp, 0));
  if (axis == Axis::dp) key = static_cast<int>(std::exchange(base.dp, 0));
  if (axis == Axis::pp) key = static_cast<int>(std::exchange(base.pp, 0));
  return split(static_cast<int>(coord_to_rank(l, base)), key);
}

}  // namespace

CommGroups build_comm_groups(const ParallelLayout& layout, std::unique_ptr<Comm> world, const CommSplit& split) {
  if (world->size() != layout.world_size())
    throw CommError("world size " + std::to_string(world->size()) + " does not match the plan's dp*tp*pp = " +
                    std::to_string(layout.world_size()));
  CommGroups g;
  g.layout = layout;
  g.coord = rank_to_coord(layout, world->rank());
  g.world = std::move(world);
  g.tp = split_along(layout, g.coord, Axis::tp, split);
  g.dp = split_along(layout, g.coord, Axis::dp, split);
  g.pp = split_along(layout, g.coord, Axis::pp, split);
  // Every rank takes part in the split; middle stages opt out.
  const bool end_stage = layout.pp > 1 && (g.first_stage() || g.last_stage());
  RankCoord column = g.coord;
  column.pp = 0;
  g.embedding = split(end_stage ? static_cast<int>(coord_to_rank(layout, column)) : -1, static_cast<int>(g.coord.pp));
  if (layout.ep > 1) {  // colored by the group's first member (cost_model/layout.h)
    const int64_t me = g.world->rank();
    const std::vector<int64_t> ep_group = ep_group_of(layout, me), expert_dp_group = expert_dp_group_of(layout, me);
    g.ep = split(static_cast<int>(ep_group.front()), static_cast<int>(g.coord.dp % layout.ep));
    g.expert_dp = split(static_cast<int>(expert_dp_group.front()), static_cast<int>(g.coord.dp / layout.ep));
  }
  return g;
}

CommGroups make_comm_groups(const ParallelLayout& layout) {
  return build_comm_groups(layout, std::make_unique<MpiComm>(MPI_COMM_WORLD), [](int color, int key) {
    MPI_Comm comm;
    MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, color < 0 ? MPI_UNDEFINED : color, key, &comm));
    return comm == MPI_COMM_NULL ? std::unique_ptr<Comm>() : std::make_unique<MpiComm>(comm);
  });
}

void TimedComm::all_reduce(torch::Tensor& t) {
  PhaseScope wait(&clock_, phase_);
  inner_->all_reduce(t);
}
void TimedComm::all_reduce_max(torch::Tensor& t) {
  PhaseScope wait(&clock_, phase_);
  inner_->all_reduce_max(t);
}
void TimedComm::reduce_scatter(const torch::Tensor& in, torch::Tensor& out) {
  PhaseScope wait(&clock_, phase_);
  inner_->reduce_scatter(in, out);
}
void TimedComm::all_gather(const torch::Tensor& in, torch::Tensor& out) {
  PhaseScope wait(&clock_, phase_);
  inner_->all_gather(in, out);
}
void TimedComm::broadcast(torch::Tensor& t, int root) {
  PhaseScope wait(&clock_, phase_);
  inner_->broadcast(t, root);
}
void TimedComm::all_to_all(const torch::Tensor& in, const std::vector<int64_t>& send_rows, torch::Tensor& out,
                           const std::vector<int64_t>& recv_rows) {
  PhaseScope wait(&clock_, phase_);
  const TraceSpan span(clock_.trace(), trace_name::ep_all_to_all, "ep", TraceThread::tp_comm);
  inner_->all_to_all(in, send_rows, out, recv_rows);
}
void TimedComm::send(const torch::Tensor& t, int peer, int tag) {
  PhaseScope wait(&clock_, phase_);
  inner_->send(t, peer, tag);
}
void TimedComm::recv(torch::Tensor& t, int peer, int tag) {
  PhaseScope wait(&clock_, phase_);
  inner_->recv(t, peer, tag);
}
void TimedComm::wait_sends() {
  PhaseScope wait(&clock_, phase_);
  inner_->wait_sends();
}
void TimedComm::barrier() {
  PhaseScope wait(&clock_, phase_);
  inner_->barrier();
}
void TimedComm::reduce_scatter_async(const torch::Tensor& in, torch::Tensor& out) {
  PhaseScope wait(&clock_, phase_);  // blocks where the backend runs it at once (MPI)
  inner_->reduce_scatter_async(in, out);
}
void TimedComm::all_reduce_async(torch::Tensor& t) {
  PhaseScope wait(&clock_, phase_);
  inner_->all_reduce_async(t);
}
void TimedComm::wait_async() {
  PhaseScope wait(&clock_, phase_);
  inner_->wait_async();
}

void time_comm_waits(CommGroups& groups, StepClock& clock) {
  for (std::unique_ptr<Comm>* c : {&groups.world, &groups.dp, &groups.pp, &groups.embedding, &groups.expert_dp})
    if (*c) *c = std::make_unique<TimedComm>(std::move(*c), clock);
  if (groups.ep) groups.ep = std::make_unique<TimedComm>(std::move(groups.ep), clock, StepPhase::ep_comm);
}

}  // namespace sextant
