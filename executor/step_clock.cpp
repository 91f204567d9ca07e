// StepClock: steady_clock marks on the CPU, CUDA events on a GPU (see step_clock.h).
#include "executor/step_clock.h"

#include <stdexcept>

#include "executor/trace_recorder.h"

#ifdef SEXTANT_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace sextant {
namespace {

#ifdef SEXTANT_HAVE_CUDA
void check_cuda(cudaError_t code, const char* what) {
  if (code != cudaSuccess) throw std::runtime_error(std::string("step clock: ") + what + ": " + cudaGetErrorString(code));
}
#endif

}  // namespace

StepClock::StepClock(torch::Device device) {
#ifdef SEXTANT_HAVE_CUDA
  gpu_ = device.is_cuda();
#else
  (void)device;
#endif
}

StepClock::~StepClock() {
#ifdef SEXTANT_HAVE_CUDA
  for (void* e : events_) cudaEventDestroy(static_cast<cudaEvent_t>(e));
#endif
}

void* StepClock::next_event() {
#ifdef SEXTANT_HAVE_CUDA
  if (marks_.size() >= events_.size()) {
    cudaEvent_t e;
    check_cuda(cudaEventCreate(&e), "cudaEventCreate");
    events_.push_back(e);
  }
  cudaEvent_t e = static_cast<cudaEvent_t>(events_[marks_.size()]);
  check_cuda(cudaEventRecord(e, cudaStreamLegacy), "cudaEventRecord");
  return e;
#else
  return nullptr;
#endif
}

void StepClock::start() {
  marks_.clear();
  running_ = true;
  phase_ = StepPhase::none;
  enter(StepPhase::none);
  if (trace_) trace_->start();
}

void StepClock::enter(StepPhase phase) {
  if (running_) marks_.push_back({phase_, std::chrono::steady_clock::now(), gpu_ ? next_event() : nullptr});
  phase_ = phase;
}

StepTimes StepClock::finish() {
  if (!running_) return {};
  enter(StepPhase::none);
  running_ = false;
  StepTimes t;
#ifdef SEXTANT_HAVE_CUDA
  if (gpu_ && !marks_.empty())
    check_cuda(cudaEventSynchronize(static_cast<cudaEvent_t>(marks_.back().event)), "cudaEventSynchronize");
#endif
  for (size_t i = 1; i < marks_.size(); ++i) {
    double s = std::chrono::duration<double>(marks_[i].at - marks_[i - 1].at).count();
#ifdef SEXTANT_HAVE_CUDA
    if (gpu_) {
      float ms = 0;
      check_cuda(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(marks_[i - 1].event),
                                      static_cast<cudaEvent_t>(marks_[i].event)),
                 "cudaEventElapsedTime");
      s = ms * 1e-3;
    }
#endif
    switch (marks_[i].phase) {
      case StepPhase::forward: t.forward_s += s; break;
      case StepPhase::backward: t.backward_s += s; break;
      case StepPhase::optimizer: t.optimizer_s += s; break;
      case StepPhase::comm_wait: t.comm_wait_s += s; break;
      case StepPhase::ep_comm: t.ep_comm_s += s; break;
      case StepPhase::none: break;
    }
  }
  return t;
}

}  // namespace sextant
