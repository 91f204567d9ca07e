// NcclComm: the Comm interface over NCCL, for tensors on this rank's GPU.
//
// The world communicator is made from an ncclUniqueId that rank 0 creates and MPI
// broadcasts; groups come from ncclCommSplit. Collectives run on the communicator's own
// stream, ordered against compute with events: the communication stream waits for what
// compute has queued so far, and compute waits for the collective before using its
// result. reduce_scatter_async and all_reduce_async let backward go on while gradients
// are reduced; the compute stream waits for them only at wait_async().
//
// "Compute" is the stream LibTorch's kernels run on: the legacy default stream unless
// set_compute_stream is called (the executor never changes LibTorch's current stream).
// Built only where CMake finds NCCL (SEXTANT_HAVE_NCCL).
#pragma once

#include <memory>
#include <vector>

#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include "executor/comm.h"

namespace sextant {

class NcclComm final : public Comm {
 public:
  // Collective over `mpi`'s ranks; this rank uses CUDA device `device`.
  static std::unique_ptr<NcclComm> from_mpi(MPI_Comm mpi, int device);
  ~NcclComm() override;
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  // Collective over this communicator's ranks (ncclCommSplit); color < 0 opts out (null).
  std::unique_ptr<NcclComm> split(int color, int key);
  void set_compute_stream(cudaStream_t stream) { compute_ = stream; }

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
  void reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output) override;
  void all_reduce_async(torch::Tensor& tensor) override;
  void wait_async() override;
  bool defers_async() const override { return true; }

 private:
  NcclComm(ncclComm_t comm, int device);
  void comm_waits_for_compute();
  void compute_waits_for_comm();
  void issue_pending_sends();  // inside a group
  void all_reduce_with(torch::Tensor& tensor, ncclRedOp_t op);

  ncclComm_t comm_ = nullptr;
  int device_ = 0, rank_ = 0, size_ = 1;
  cudaStream_t stream_ = nullptr, compute_ = nullptr;  // compute_: the legacy default stream
  cudaEvent_t compute_ready_ = nullptr, comm_done_ = nullptr;
  struct PendingSend {
    torch::Tensor tensor;
    int peer;
  };
  std::vector<PendingSend> pending_sends_;
  std::vector<torch::Tensor> in_flight_;  // kept alive until the compute stream has waited
};

// The layout's tp, dp, pp and embedding groups over NCCL, on device local_rank % GPUs.
CommGroups make_nccl_comm_groups(const ParallelLayout& layout, int device);

}  // namespace sextant
