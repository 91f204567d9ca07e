// The measured timeline of one step on this rank, for `sextant execute --trace`: named
// spans (forward, backward, p2p send/recv, dp reduce, optimizer; the vocabulary of the
// predicted trace, planner/timeline.h) with times from the step's start, which follows a
// world barrier so the ranks' clocks line up. Only the chosen step has a recorder: on every
// other step the spans are null and cost a branch.
// On a GPU each span is a pair of CUDA events on the legacy default stream (where the step
// clock's marks are, executor/step_clock.h), read once the step is over; on the CPU,
// steady_clock readings.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "executor/comm.h"
#include "planner/timeline.h"

namespace sextant {

class TraceRecorder {
 public:
  TraceRecorder(torch::Device device, int64_t process);
  ~TraceRecorder();
  TraceRecorder(const TraceRecorder&) = delete;
  TraceRecorder& operator=(const TraceRecorder&) = delete;

  void start();  // the step's origin; forgets earlier spans
  // A span begins now; its index is end()'s argument. micro_batch / chunk < 0: none.
  size_t begin(const char* name, const char* category, TraceThread thread, int64_t micro_batch,
               int64_t chunk);
  void end(size_t span);
  // The spans as events, microseconds from start() (on a GPU: waits for the last event).
  std::vector<TraceEvent> finish();

 private:
  struct Span {
    const char* name;
    const char* category;
    TraceThread thread;
    int64_t micro_batch, chunk;
    std::chrono::steady_clock::time_point begin_at, end_at;
    void* begin_event;  // cudaEvent_t on a GPU, else null
    void* end_event;
  };
  void* record_event();

  bool gpu_ = false;
  int64_t process_ = 0;
  std::chrono::steady_clock::time_point origin_;
  void* origin_event_ = nullptr;
  std::vector<Span> spans_;
  std::vector<void*> events_;  // every CUDA event made; events_[0..used_) are this step's
  size_t used_ = 0;
};

// begin() on construction, end() on destruction; nothing without a recorder.
class TraceSpan {
 public:
  TraceSpan(TraceRecorder* recorder, const char* name, const char* category, TraceThread thread,
            int64_t micro_batch = -1, int64_t chunk = -1)
      : recorder_(recorder) {
    if (recorder_) span_ = recorder_->begin(name, category, thread, micro_batch, chunk);
  }
  ~TraceSpan() {
    if (recorder_) recorder_->end(span_);
  }
  TraceSpan(const TraceSpan&) = delete;
  TraceSpan& operator=(const TraceSpan&) = delete;

 private:
  TraceRecorder* recorder_;
  size_t span_ = 0;
};

// Every rank's events and name ("rank R (stage S, dp D, tp T)") gathered to rank 0 over
// MPI_COMM_WORLD, which writes them as one Chrome trace to `path` (through a
// temporary file and a rename). Collective.
void write_measured_trace(const std::string& path, const std::vector<TraceEvent>& events,
                          const CommGroups& comm, int64_t step);

}  // namespace sextant
