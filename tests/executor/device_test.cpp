// The rule that gives each rank its device (executor/device.h), with made-up node shapes:
// the figures a GPU machine would report, tested without one.
#include <gtest/gtest.h>

#include "cost_model/error.h"
#include "executor/device.h"

namespace sextant {
namespace {

TEST(ChooseDevice, OneRankPerGpuGetsItsLocalGpu) {
  for (const char* wanted : {"auto", "cuda"}) {
    const DeviceChoice c = choose_device(wanted, false, /*gpus=*/8, /*local_rank=*/3, /*most_ranks=*/8);
    EXPECT_TRUE(c.device.is_cuda());
    EXPECT_EQ(c.device.index(), 3);
    EXPECT_TRUE(c.note.empty());
  }
}

// Defect: every rank took local_rank % gpus, so 4 ranks on one GPU all took GPU 0 and
// NCCL aborted with "Duplicate GPU detected".
TEST(ChooseDevice, AutoFallsBackToCpuRanksWhenRanksOutnumberGpus) {
  for (int local_rank = 0; local_rank < 4; ++local_rank) {
    const DeviceChoice c = choose_device("auto", false, /*gpus=*/1, local_rank, /*most_ranks=*/4);
    EXPECT_TRUE(c.device.is_cpu()) << local_rank;
    EXPECT_NE(c.note.find("4 ranks on a node with 1 GPU"), std::string::npos) << c.note;
  }
}

TEST(ChooseDevice, CudaRefusesMoreRanksThanGpus) {
  try {
    choose_device("cuda", false, /*gpus=*/2, 0, /*most_ranks=*/4);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("at most 2 ranks per node"), std::string::npos) << e.what();
  }
}

TEST(ChooseDevice, CpuFp64AndNoGpu) {
  EXPECT_TRUE(choose_device("cpu", false, 8, 0, 1).device.is_cpu());
  EXPECT_TRUE(choose_device("auto", true, 8, 0, 1).device.is_cpu());  // --fp64 trains on CPU ranks
  EXPECT_TRUE(choose_device("auto", false, 0, 0, 1).device.is_cpu());
  EXPECT_TRUE(choose_device("auto", false, 0, 0, 1).note.empty());
  EXPECT_THROW(choose_device("cuda", false, 0, 0, 1), InputError);
  EXPECT_THROW(choose_device("cuda", true, 8, 0, 1), InputError);
  EXPECT_THROW(choose_device("gpu", false, 8, 0, 1), InputError);
}

}  // namespace
}  // namespace sextant
