// TraceRecorder: steady_clock or CUDA-event spans of one step, gathered to rank 0.
#include "executor/trace_recorder.h"

#include <mpi.h>

#include <algorithm>
#include <stdexcept>

#include "planner/plan_output.h"

#ifdef SEXTANT_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace sextant {
namespace {

#ifdef SEXTANT_HAVE_CUDA
void check_cuda(cudaError_t code, const char* what) {
  if (code != cudaSuccess)
    throw std::runtime_error(std::string("trace: ") + what + ": " + cudaGetErrorString(code));
}

double elapsed_us(void* from, void* to) {
  float ms = 0;
  check_cuda(
      cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(from), static_cast<cudaEvent_t>(to)),
      "cudaEventElapsedTime");
  return static_cast<double>(ms) * 1e3;
}
#endif

double elapsed_us(std::chrono::steady_clock::time_point from,
                  std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double, std::micro>(to - from).count();
}

}  // namespace

TraceRecorder::TraceRecorder(torch::Device device, int64_t process) : process_(process) {
#ifdef SEXTANT_HAVE_CUDA
  gpu_ = device.is_cuda();
#else
  (void)device;
#endif
}

TraceRecorder::~TraceRecorder() {
#ifdef SEXTANT_HAVE_CUDA
  for (void* e : events_) cudaEventDestroy(static_cast<cudaEvent_t>(e));
#endif
}

void* TraceRecorder::record_event() {
#ifdef SEXTANT_HAVE_CUDA
  if (!gpu_) return nullptr;
  if (used_ >= events_.size()) {
    cudaEvent_t e;
    check_cuda(cudaEventCreate(&e), "cudaEventCreate");
    events_.push_back(e);
  }
  cudaEvent_t e = static_cast<cudaEvent_t>(events_[used_++]);
  check_cuda(cudaEventRecord(e, cudaStreamLegacy), "cudaEventRecord");
  return e;
#else
  return nullptr;
#endif
}

void TraceRecorder::start() {
  spans_.clear();
  used_ = 0;
  origin_ = std::chrono::steady_clock::now();
  origin_event_ = record_event();
}

size_t TraceRecorder::begin(const char* name, const char* category, TraceThread thread,
                            int64_t micro_batch, int64_t chunk) {
  spans_.push_back({name,
                    category,
                    thread,
                    micro_batch,
                    chunk,
                    std::chrono::steady_clock::now(),
                    {},
                    record_event(),
                    nullptr});
  return spans_.size() - 1;
}

void TraceRecorder::end(size_t span) {
  spans_[span].end_at = std::chrono::steady_clock::now();
  spans_[span].end_event = record_event();
}

std::vector<TraceEvent> TraceRecorder::finish() {
#ifdef SEXTANT_HAVE_CUDA
  if (gpu_ && used_ > 0)
    check_cuda(cudaEventSynchronize(static_cast<cudaEvent_t>(events_[used_ - 1])), "sync");
#endif
  std::vector<TraceEvent> out;
  for (const Span& s : spans_) {
    double start_us = elapsed_us(origin_, s.begin_at), end_us = elapsed_us(origin_, s.end_at);
#ifdef SEXTANT_HAVE_CUDA
    if (gpu_) {
      start_us = elapsed_us(origin_event_, s.begin_event);
      end_us = elapsed_us(origin_event_, s.end_event);
    }
#endif
    TraceEvent e{s.name, s.category, process_, s.thread, start_us, std::max(0.0, end_us - start_us),
                 {}};
    if (s.micro_batch >= 0) e.args["micro_batch"] = s.micro_batch;
    if (s.chunk >= 0) e.args["chunk"] = s.chunk;
    out.push_back(std::move(e));
  }
  spans_.clear();
  return out;
}

void write_measured_trace(const std::string& path, const std::vector<TraceEvent>& events,
                          const CommGroups& comm, int64_t step) {
  const RankCoord& c = comm.coord;
  int rank = 0, size = 1;
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
  Timeline mine;
  mine.processes.push_back({rank, "rank " + std::to_string(rank) + " (stage " +
                                      std::to_string(c.pp) + ", dp " + std::to_string(c.dp) +
                                      ", tp " + std::to_string(c.tp) + ")"});
  mine.events = events;
  const std::string text = timeline_to_chrome_json(mine)["traceEvents"].dump();
  int length = static_cast<int>(text.size());
  std::vector<int> lengths(static_cast<size_t>(size)), offsets(static_cast<size_t>(size));
  MPI_CHECK(MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD));
  int total = 0;
  for (int r = 0; r < size; ++r) {
    offsets[static_cast<size_t>(r)] = total;
    total += lengths[static_cast<size_t>(r)];
  }
  std::string all(rank == 0 ? static_cast<size_t>(total) : 0, '\0');
  MPI_CHECK(MPI_Gatherv(text.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(),
                        MPI_CHAR, 0, MPI_COMM_WORLD));
  if (rank != 0) return;
  nlohmann::json merged = nlohmann::json::array();
  for (int r = 0; r < size; ++r)
    for (auto& e :
         nlohmann::json::parse(all.substr(static_cast<size_t>(offsets[static_cast<size_t>(r)]),
                                          static_cast<size_t>(lengths[static_cast<size_t>(r)]))))
      merged.push_back(std::move(e));
  const nlohmann::json trace = {
      {"traceEvents", merged},
      {"displayTimeUnit", "ms"},
      {"otherData", {{"step", step}, {"measured", true}, {"ranks", size}}}};
  try {
    write_file_atomically(path, trace.dump() + "\n", "--trace");
  } catch (const std::exception& e) {  // rank 0's alone, after the input checks: end the whole job
    throw std::runtime_error(e.what());
  }
}

}  // namespace sextant
