// Which device each rank of `sextant execute` trains on. NCCL allows one rank per GPU
// ("Duplicate GPU detected" otherwise), so ranks may use GPUs only where no node has
// more ranks than GPUs; every rank must decide alike, or the job mixes backends.
#pragma once

#include <string>

#include <torch/torch.h>

namespace sextant {

struct DeviceChoice {
  torch::Device device = torch::kCPU;
  std::string note;  // why `auto` fell back to CPU ranks; empty otherwise
};

// Pure rule, for one rank: `wanted` is auto, cpu or cuda; `gpus_per_node` the CUDA
// devices LibTorch sees (0 without CUDA); `local_rank` this rank's index on its node;
// `most_ranks_per_node` the largest number of ranks any node of the job holds.
//   cpu, or --fp64 (float64 runs on CPU ranks): the CPU.
//   cuda: GPU local_rank; InputError when there is no GPU, or a node has more ranks than GPUs.
//   auto: the same GPU when every node has a GPU per rank; else the CPU, with a note.
DeviceChoice choose_device(const std::string& wanted, bool fp64, int gpus_per_node, int local_rank,
                           int most_ranks_per_node);

// choose_device with this job's figures: the node-local rank from MPI_COMM_TYPE_SHARED,
// the largest node's rank count agreed over MPI_COMM_WORLD. Collective.
DeviceChoice pick_device(const std::string& wanted, bool fp64);

}  // namespace sextant
