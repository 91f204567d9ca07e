// NcclComm (see nccl_comm.h).
#include "executor/nccl_comm.h"

#include <string>

namespace sextant {
namespace {

void nccl_check(ncclResult_t code, const char* what) {
  if (code != ncclSuccess)
    throw CommError(std::string("NCCL: ") + what + " failed: " + ncclGetErrorString(code));
}
void cuda_check(cudaError_t code, const char* what) {
  if (code != cudaSuccess) throw CommError(std::string("CUDA: ") + what + " failed: " + cudaGetErrorString(code));
}
#define NCCL_CHECK(call) nccl_check((call), #call)
#define CUDA_CHECK(call) cuda_check((call), #call)

ncclDataType_t nccl_type(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat: return ncclFloat32;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kHalf: return ncclFloat16;
    case torch::kDouble: return ncclFloat64;
    case torch::kLong: return ncclInt64;
    case torch::kInt: return ncclInt32;
    case torch::kByte: return ncclUint8;
    default: throw CommError(std::string("NcclComm: unsupported dtype ") + std::string(c10::toString(t.scalar_type())));
  }
}

void require_contiguous(const torch::Tensor& t, const char* what) {
  if (!t.is_contiguous()) throw CommError(std::string("NcclComm: ") + what + " needs a contiguous tensor");
}

}  // namespace

NcclComm::NcclComm(ncclComm_t comm, int device) : comm_(comm), device_(device) {
  NCCL_CHECK(ncclCommUserRank(comm_, &rank_));
  NCCL_CHECK(ncclCommCount(comm_, &size_));
  CUDA_CHECK(cudaSetDevice(device_));
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  CUDA_CHECK(cudaEventCreateWithFlags(&compute_ready_, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventCreateWithFlags(&comm_done_, cudaEventDisableTiming));
}

NcclComm::~NcclComm() {
  if (stream_) cudaStreamSynchronize(stream_);
  if (comm_) ncclCommDestroy(comm_);
  if (compute_ready_) cudaEventDestroy(compute_ready_);
  if (comm_done_) cudaEventDestroy(comm_done_);
  if (stream_) cudaStreamDestroy(stream_);
}

std::unique_ptr<NcclComm> NcclComm::from_mpi(MPI_Comm mpi, int device) {
  int rank = 0, size = 1;
  MPI_CHECK(MPI_Comm_rank(mpi, &rank));
  MPI_CHECK(MPI_Comm_size(mpi, &size));
  ncclUniqueId id;
  if (rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  MPI_CHECK(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, mpi));
  CUDA_CHECK(cudaSetDevice(device));
  ncclComm_t comm;
  NCCL_CHECK(ncclCommInitRank(&comm, size, id, rank));
  return std::unique_ptr<NcclComm>(new NcclComm(comm, device));
}

std::unique_ptr<NcclComm> NcclComm::split(int color, int key) {
  ncclComm_t comm = nullptr;
  NCCL_CHECK(ncclCommSplit(comm_, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &comm, nullptr));
  if (!comm) return nullptr;
  return std::unique_ptr<NcclComm>(new NcclComm(comm, device_));
}

void NcclComm::comm_waits_for_compute() {
  CUDA_CHECK(cudaEventRecord(compute_ready_, compute_));
  CUDA_CHECK(cudaStreamWaitEvent(stream_, compute_ready_, 0));
}

void NcclComm::compute_waits_for_comm() {
  CUDA_CHECK(cudaEventRecord(comm_done_, stream_));
  CUDA_CHECK(cudaStreamWaitEvent(compute_, comm_done_, 0));
}

// Host tensors (the trainer's loss and norm scalars) go through the device and back;
// returns false for device tensors, which the caller handles itself.
template <typename Op>
bool through_device(torch::Tensor& t, int device, Op&& op) {
  if (t.is_cuda()) return false;
  torch::Tensor on_device = t.to(torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(device)));
  op(on_device);
  t.copy_(on_device);
  return true;
}

void NcclComm::all_reduce(torch::Tensor& t) { all_reduce_with(t, ncclSum); }

void NcclComm::all_reduce_max(torch::Tensor& t) { all_reduce_with(t, ncclMax); }

void NcclComm::all_reduce_with(torch::Tensor& t, ncclRedOp_t op) {
  if (through_device(t, device_, [&](torch::Tensor& d) { all_reduce_with(d, op); })) return;
  require_contiguous(t, "all_reduce");
  comm_waits_for_compute();
  NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t), op, comm_, stream_));
  compute_waits_for_comm();
}

void NcclComm::reduce_scatter(const torch::Tensor& in, torch::Tensor& out) {
  reduce_scatter_async(in, out);
  wait_async();
}

void NcclComm::reduce_scatter_async(const torch::Tensor& in, torch::Tensor& out) {
  require_contiguous(in, "reduce_scatter");
  require_contiguous(out, "reduce_scatter");
  if (in.numel() != out.numel() * size_) throw CommError("reduce_scatter: input must be size() x output");
  comm_waits_for_compute();
  NCCL_CHECK(ncclReduceScatter(in.data_ptr(), out.data_ptr(), out.numel(), nccl_type(in), ncclSum, comm_, stream_));
  in_flight_.push_back(in);
  in_flight_.push_back(out);
}

void NcclComm::all_reduce_async(torch::Tensor& t) {
  require_contiguous(t, "all_reduce_async");
  comm_waits_for_compute();
  NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t), ncclSum, comm_, stream_));
  in_flight_.push_back(t);
}

void NcclComm::wait_async() {
  compute_waits_for_comm();
  in_flight_.clear();  // later compute-stream reuse of their memory is ordered after the wait
}

void NcclComm::all_gather(const torch::Tensor& in, torch::Tensor& out) {
  require_contiguous(in, "all_gather");
  require_contiguous(out, "all_gather");
  if (out.numel() != in.numel() * size_) throw CommError("all_gather: output must be size() x input");
  comm_waits_for_compute();
  NCCL_CHECK(ncclAllGather(in.data_ptr(), out.data_ptr(), in.numel(), nccl_type(in), comm_, stream_));
  compute_waits_for_comm();
}

void NcclComm::broadcast(torch::Tensor& t, int root) {
  if (through_device(t, device_, [&](torch::Tensor& d) { broadcast(d, root); })) return;
  require_contiguous(t, "broadcast");
  comm_waits_for_compute();
  NCCL_CHECK(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t), root, comm_, stream_));
  compute_waits_for_comm();
}

// NCCL has no all-to-all-v: one group of a send and a receive per peer (NCCL's own
// recipe), peers with nothing to move skipped. The counts are host values (the caller
// exchanged them first, executor/moe.cpp). Pending pipeline sends are not mixed in: they
// go to another communicator.
void NcclComm::all_to_all(const torch::Tensor& in, const std::vector<int64_t>& send_rows, torch::Tensor& out,
                          const std::vector<int64_t>& recv_rows) {
  require_contiguous(in, "all_to_all");
  require_contiguous(out, "all_to_all");
  check_all_to_all(in, send_rows, out, recv_rows, size_);
  const int64_t row = c10::multiply_integers(in.sizes().slice(1));
  const int64_t bytes = static_cast<int64_t>(in.element_size());
  comm_waits_for_compute();
  NCCL_CHECK(ncclGroupStart());
  int64_t send_at = 0, recv_at = 0;
  for (int peer = 0; peer < size_; ++peer) {
    const size_t p = static_cast<size_t>(peer);
    if (send_rows[p] > 0)
      NCCL_CHECK(ncclSend(static_cast<const char*>(in.data_ptr()) + send_at * row * bytes,
                          static_cast<size_t>(send_rows[p] * row), nccl_type(in), peer, comm_, stream_));
    if (recv_rows[p] > 0)
      NCCL_CHECK(ncclRecv(static_cast<char*>(out.data_ptr()) + recv_at * row * bytes,
                          static_cast<size_t>(recv_rows[p] * row), nccl_type(out), peer, comm_, stream_));
    send_at += send_rows[p];
    recv_at += recv_rows[p];
  }
  NCCL_CHECK(ncclGroupEnd());
  compute_waits_for_comm();
}

// NCCL matches point-to-point messages by order per pair of ranks, not by tag. Sends are
// held until the next receive (or wait_sends) and issued with it in one group, so two
// stages that each send before they receive (1F1B's steady state) cannot deadlock.
void NcclComm::send(const torch::Tensor& t, int peer, int /*tag*/) {
  require_contiguous(t, "send");
  pending_sends_.push_back({t, peer});
}

void NcclComm::issue_pending_sends() {
  for (const PendingSend& s : pending_sends_) {
    NCCL_CHECK(ncclSend(s.tensor.data_ptr(), s.tensor.numel(), nccl_type(s.tensor), s.peer, comm_, stream_));
    in_flight_.push_back(s.tensor);
  }
  pending_sends_.clear();
}

void NcclComm::recv(torch::Tensor& t, int peer, int /*tag*/) {
  require_contiguous(t, "recv");
  comm_waits_for_compute();
  NCCL_CHECK(ncclGroupStart());
  issue_pending_sends();
  NCCL_CHECK(ncclRecv(t.data_ptr(), t.numel(), nccl_type(t), peer, comm_, stream_));
  NCCL_CHECK(ncclGroupEnd());
  compute_waits_for_comm();
  // The compute stream now waits for everything queued on the communication stream, these
  // sends included: later reuse of their memory is ordered after them (as in wait_async).
  in_flight_.clear();
}

void NcclComm::wait_sends() {
  if (!pending_sends_.empty()) {
    comm_waits_for_compute();
    NCCL_CHECK(ncclGroupStart());
    issue_pending_sends();
    NCCL_CHECK(ncclGroupEnd());
  }
  wait_async();
}

void NcclComm::barrier() {
  torch::Tensor one = torch::ones({1}, torch::TensorOptions().device(torch::kCUDA, static_cast<c10::DeviceIndex>(device_)));
  all_reduce(one);
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

CommGroups make_nccl_comm_groups(const ParallelLayout& layout, int device) {
  std::unique_ptr<NcclComm> world = NcclComm::from_mpi(MPI_COMM_WORLD, device);
  NcclComm* parent = world.get();
  return build_comm_groups(layout, std::move(world),
                           [parent](int color, int key) -> std::unique_ptr<Comm> { return parent->split(color, key); });
}

}  // namespace sextant
