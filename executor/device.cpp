// The device rule of device.h, and the MPI queries that feed it.
#include "executor/device.h"

#include <mpi.h>

#include <torch/version.h>

#include "cost_model/error.h"
#include "executor/comm.h"

namespace sextant {

DeviceChoice choose_device(const std::string& wanted, bool fp64, int gpus_per_node, int local_rank,
                           int most_ranks_per_node) {
  if (wanted != "auto" && wanted != "cpu" && wanted != "cuda")
    throw InputError("--device", wanted, "allowed: auto, cpu, cuda");
  if (fp64 && wanted == "cuda") throw InputError("--fp64", "", "trains on CPU ranks only; use --device cpu");
  if (wanted == "cpu" || fp64) return {};
  if (gpus_per_node == 0) {
    if (wanted == "cuda")
      throw InputError("--device", wanted, "LibTorch sees no CUDA device here (LibTorch " TORCH_VERSION ")");
    return {};
  }
  if (most_ranks_per_node > gpus_per_node) {
    const std::string counts = std::to_string(most_ranks_per_node) + " ranks on a node with " +
                               std::to_string(gpus_per_node) + " GPU" + (gpus_per_node == 1 ? "" : "s");
    if (wanted == "cuda")
      throw InputError("--device", wanted,
                       counts + ": NCCL needs one GPU per rank; launch at most " + std::to_string(gpus_per_node) +
                           " ranks per node, or use --device cpu");
    return {torch::kCPU, "--device auto: " + counts + "; NCCL needs one GPU per rank, so every rank trains on the CPU"};
  }
  return {torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank)), ""};
}

DeviceChoice pick_device(const std::string& wanted, bool fp64) {
  MPI_Comm node;
  MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int local_rank = 0, local_size = 1;
  MPI_CHECK(MPI_Comm_rank(node, &local_rank));
  MPI_CHECK(MPI_Comm_size(node, &local_size));
  MPI_CHECK(MPI_Comm_free(&node));
  int most = 0;
  MPI_CHECK(MPI_Allreduce(&local_size, &most, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
  // The fewest GPUs any node has, so that every rank applies the rule to the same figures.
  int gpus = torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  int fewest = 0;
  MPI_CHECK(MPI_Allreduce(&gpus, &fewest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  return choose_device(wanted, fp64, fewest, local_rank, most);
}

}  // namespace sextant
