// Collective communication for the executor: one interface, backends per device kind.
// MpiComm moves CPU tensors with MPI; the NCCL backend (GPU issue) implements the same
// interface. CommGroups holds the tp, dp and pp groups of one rank (and the ep and
// expert-dp groups of MoE), built from the layout's one rank mapping (cost_model/layout.h),
// passed down explicitly.
#pragma once

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <mpi.h>
#include <torch/torch.h>

#include "cost_model/layout.h"
#include "executor/step_clock.h"

namespace sextant {

class CommError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// MPI_CHECK: on failure throws CommError naming file:line, the world rank and MPI's text.
void mpi_check(int code, const char* what, const char* file, int line);
#define MPI_CHECK(call) ::sextant::mpi_check((call), #call, __FILE__, __LINE__)

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // All operate on contiguous CPU tensors; reductions sum unless named otherwise.
  virtual void all_reduce(torch::Tensor& tensor) = 0;
  virtual void all_reduce_max(torch::Tensor& tensor) = 0;
  // `input` holds size() equal chunks; `output` receives this rank's summed chunk.
  virtual void reduce_scatter(const torch::Tensor& input, torch::Tensor& output) = 0;
  // `output` receives every rank's `input`, in rank order.
  virtual void all_gather(const torch::Tensor& input, torch::Tensor& output) = 0;
  virtual void broadcast(torch::Tensor& tensor, int root) = 0;
  // All-to-all with per-peer counts, along dim 0 (MoE dispatch and combine): `input` holds
  // send_rows[p] rows for peer p, peers in rank order; `output` (contiguous, allocated by
  // the caller with Σ recv_rows rows of input's row shape) receives recv_rows[p] rows from
  // peer p, in rank order. Every rank must pass the counts its peers expect.
  virtual void all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows, torch::Tensor& output,
                          const std::vector<int64_t>& recv_rows) = 0;
  // Sends do not block (the tensor is kept until wait_sends); receives block.
  virtual void send(const torch::Tensor& tensor, int peer, int tag) = 0;
  virtual void recv(torch::Tensor& tensor, int peer, int tag) = 0;
  virtual void wait_sends() = 0;
  virtual void barrier() = 0;
  // A reduce-scatter that later work may overlap: `input` and `output` must stay untouched
  // until wait_async(), after which every one started is complete (as seen by the next
  // compute). MPI runs it at once; NCCL queues it on the communication stream.
  virtual void reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output) {
    reduce_scatter(input, output);
  }
  // An all-reduce (sum, in place) under the same rule: `tensor` stays untouched until
  // wait_async(). MPI runs it at once; NCCL queues it on the communication stream.
  virtual void all_reduce_async(torch::Tensor& tensor) { all_reduce(tensor); }
  virtual void wait_async() {}
  // True when the *_async calls return before their result is ready (NCCL), so the caller
  // must keep their tensors until wait_async(); false when they complete at once (MPI).
  virtual bool defers_async() const { return false; }
};

// The checks every backend's all_to_all makes on its arguments (counts per peer of a
// group of `peers`, one row shape and dtype, counts adding up to the rows); CommError if not.
void check_all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows, const torch::Tensor& output,
                      const std::vector<int64_t>& recv_rows, int peers);

class MpiComm final : public Comm {
 public:
  // Takes ownership of `comm` unless it is MPI_COMM_WORLD or MPI_COMM_SELF.
  explicit MpiComm(MPI_Comm comm);
  ~MpiComm() override;
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_reduce(torch::Tensor& tensor) override;
  void all_reduce_max(torch::Tensor& tensor) override;
  void reduce_scatter(const torch::Tensor& input, torch::Tensor& output) override;
  void all_gather(const torch::Tensor& input, torch::Tensor& output) override;
  void broadcast(torch::Tensor& tensor, int root) override;
  void all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows, torch::Tensor& output,
                  const std::vector<int64_t>& recv_rows) override;
  void send(const torch::Tensor& tensor, int peer, int tag) override;
  void recv(torch::Tensor& tensor, int peer, int tag) override;
  void wait_sends() override;
  void barrier() override;

 private:
  void all_reduce_with(torch::Tensor& tensor, MPI_Op op, const char* what);

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  void reap_sends();
  std::vector<MPI_Request> pending_;
  std::vector<torch::Tensor> in_flight_;
};

// The groups one rank belongs to. Ranks inside each group are ordered by that axis's
// coordinate, so a group's rank equals the coordinate (tp_rank, dp_rank, pp_rank).
struct CommGroups {
  ParallelLayout layout;
  RankCoord coord;
  std::unique_ptr<Comm> world, tp, dp, pp;
  // First and last pipeline stage of this rank's (dp, tp) column: tied embeddings are
  // summed here. Null on middle stages and when pp == 1.
  std::unique_ptr<Comm> embedding;
  // Expert parallelism (layout.ep > 1 only; null otherwise): the ep group (the ranks of
  // this rank's dp group whose dp coordinates share d / ep, ordered by d % ep: the experts
  // are split over it and tokens exchanged within it) and the expert-dp group (those
  // sharing d % ep, ordered by d / ep: each expert's replicas, over which its gradients
  // are reduced and, under ZeRO, its states sharded). cost_model/layout.h, ep_group_of.
  std::unique_ptr<Comm> ep, expert_dp;
  bool first_stage() const { return coord.pp == 0; }
  bool last_stage() const { return coord.pp == layout.pp - 1; }
  int64_t ep_rank() const { return coord.dp % layout.ep; }
  // The group expert parameters are reduced over: expert_dp, or dp itself when ep == 1.
  Comm& expert_dp_group() const { return expert_dp ? *expert_dp : *dp; }
};

// Splits MPI_COMM_WORLD by the layout; world size must equal layout.world_size().
CommGroups make_comm_groups(const ParallelLayout& layout);

// The same grouping over any backend: `split(color, key)` is called collectively by every
// rank once per group kind (tp, dp, pp, embedding, and ep and expert-dp when ep > 1) and returns this rank's group of the
// ranks sharing `color`, ordered by `key`; color -1 opts out (returns null).
using CommSplit = std::function<std::unique_ptr<Comm>(int color, int key)>;
CommGroups build_comm_groups(const ParallelLayout& layout, std::unique_ptr<Comm> world, const CommSplit& split);

// A group whose calls count as comm waits of `clock` (executor/step_clock.h) for as long
// as they block: the async starts return at once on NCCL, and their wait_async counts.
// `phase`: what the blocked time counts as (comm_wait; ep_comm for the ep group).
class TimedComm final : public Comm {
 public:
  TimedComm(std::unique_ptr<Comm> inner, StepClock& clock, StepPhase phase = StepPhase::comm_wait)
      : inner_(std::move(inner)), clock_(clock), phase_(phase) {}
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  void all_reduce(torch::Tensor& tensor) override;
  void all_reduce_max(torch::Tensor& tensor) override;
  void reduce_scatter(const torch::Tensor& input, torch::Tensor& output) override;
  void all_gather(const torch::Tensor& input, torch::Tensor& output) override;
  void broadcast(torch::Tensor& tensor, int root) override;
  void all_to_all(const torch::Tensor& input, const std::vector<int64_t>& send_rows, torch::Tensor& output,
                  const std::vector<int64_t>& recv_rows) override;
  void send(const torch::Tensor& tensor, int peer, int tag) override;
  void recv(torch::Tensor& tensor, int peer, int tag) override;
  void wait_sends() override;
  void barrier() override;
  void reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output) override;
  void all_reduce_async(torch::Tensor& tensor) override;
  void wait_async() override;
  bool defers_async() const override { return inner_->defers_async(); }

 private:
  std::unique_ptr<Comm> inner_;
  StepClock& clock_;
  StepPhase phase_;
};

// Times the waits of the dp, pp, embedding, expert-dp and world groups of `groups` on
// `clock` as comm waits, and the ep group's all-to-alls as ep_comm. The tp collectives
// stay part of the forward and backward they sit in (the cost model counts them there
// too, as tp_comm_s beside compute).
void time_comm_waits(CommGroups& groups, StepClock& clock);

}  // namespace sextant
