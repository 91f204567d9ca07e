// Where one step's time goes on this rank: forward, backward and optimizer work, the
// time blocked in communication (dp and pp collectives, pipeline sends and receives), and
// the MoE all-to-alls of the ep group (dispatch and combine, their count exchanges, in
// forward, backward and recompute), which stand apart as ep_comm.
//
// The step is a sequence of marks; the time between two marks goes to the phase that was
// current. Phases nest (a receive inside a forward is a comm wait, then the forward goes
// on), so the five parts never overlap and their sum is at most the step's wall time.
// On a GPU the marks are CUDA events on the legacy default stream, where LibTorch's ops,
// our kernels and NCCL's stream waits are ordered (executor/nccl_comm.h): a comm wait is
// then the time the compute stream stood still. On the CPU they are steady_clock readings.
#pragma once

#include <chrono>
#include <vector>

#include <torch/torch.h>

namespace sextant {

class TraceRecorder;  // executor/trace_recorder.h

struct StepTimes {
  double forward_s = 0, backward_s = 0, optimizer_s = 0, comm_wait_s = 0;
  double ep_comm_s = 0;  // MoE all-to-alls (0 without expert parallelism)
};

enum class StepPhase { none, forward, backward, optimizer, comm_wait, ep_comm };

class StepClock {
 public:
  explicit StepClock(torch::Device device);
  ~StepClock();
  StepClock(const StepClock&) = delete;
  StepClock& operator=(const StepClock&) = delete;

  void start();  // a new step, in no phase; marks are ignored outside start()..finish()
  // Marks now: the time since the last mark goes to the current phase; `phase` follows.
  void enter(StepPhase phase);
  StepPhase phase() const { return phase_; }
  // The step's last mark and its parts (on a GPU: waits for the step's last event); all
  // zero when no step was started.
  StepTimes finish();
  // The recorder of this step's timeline (execute --trace), started by start(); null on
  // the steps not traced.
  void set_trace(TraceRecorder* trace) { trace_ = trace; }
  TraceRecorder* trace() const { return trace_; }

 private:
  struct Mark {
    StepPhase phase;  // the phase that ends at this mark
    std::chrono::steady_clock::time_point at;
    void* event;      // cudaEvent_t on a GPU, else null
  };
  void* next_event();

  bool gpu_ = false, running_ = false;
  TraceRecorder* trace_ = nullptr;
  StepPhase phase_ = StepPhase::none;
  std::vector<Mark> marks_;
  std::vector<void*> events_;  // every event made, reused step after step
};

// Enters `phase` for the scope and returns to the phase before; does nothing without a clock.
class PhaseScope {
 public:
  PhaseScope(StepClock* clock, StepPhase phase) : clock_(clock) {
    if (!clock_) return;
    before_ = clock_->phase();
    clock_->enter(phase);
  }
  ~PhaseScope() {
    if (clock_) clock_->enter(before_);
  }
  PhaseScope(const PhaseScope&) = delete;
  PhaseScope& operator=(const PhaseScope&) = delete;

 private:
  StepClock* clock_;
  StepPhase before_ = StepPhase::none;
};

}  // namespace sextant
