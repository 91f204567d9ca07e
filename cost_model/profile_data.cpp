// The measured profile's JSON: one writer, one reader.
#include "cost_model/profile_data.h"

#include <tuple>

#include "cost_model/error.h"
#include "cost_model/json_fields.h"

namespace sextant {
namespace {

// Descriptive text (host name, versions): any string, empty included, as the profiler
// wrote it.
std::string text(const JsonFields& f, const std::string& key) {
  if (!f.has(key)) throw InputError(f.where(), key, "missing required field");
  const nlohmann::json& v = f.json().at(key);
  if (!v.is_string()) throw InputError(f.where(), key, "expected a string");
  return v.get<std::string>();
}

const nlohmann::json& array(const JsonFields& f, const std::string& key) {
  if (!f.has(key)) throw InputError(f.where(), key, "missing required field");
  const nlohmann::json& v = f.json().at(key);
  if (!v.is_array()) throw InputError(f.where(), key, "expected a JSON array");
  return v;
}

// Object `key`; its fields are named "key: field".
JsonFields object(const JsonFields& f, const std::string& key) {
  return JsonFields(f.object(key).json(), f.where() + ": " + key);
}

// The i-th entry of array `key`, as an object; its fields are named "key[i]: field".
JsonFields entry(const JsonFields& f, const std::string& key, const nlohmann::json& e, size_t i) {
  const std::string at = key + "[" + std::to_string(i) + "]";
  if (!e.is_object()) throw InputError(f.where(), at, "expected a JSON object");
  return JsonFields(e, f.where() + ": " + at);
}

Collective collective_from_string(const JsonFields& f, const std::string& key) {
  const std::string name = f.string(key);
  for (Collective c : {Collective::all_reduce, Collective::reduce_scatter, Collective::all_gather,
                       Collective::broadcast, Collective::send_recv})
    if (name == to_string(c)) return c;
  throw InputError(f.where(), key,
                   "got \"" + name +
                       "\"; allowed: all_reduce, reduce_scatter, all_gather, broadcast, send_recv");
}

}  // namespace

bool ProfileMachine::operator==(const ProfileMachine& o) const {
  return std::tie(hostname, cpu, cores, device) == std::tie(o.hostname, o.cpu, o.cores, o.device);
}

bool ProfileLibraries::operator==(const ProfileLibraries& o) const {
  return std::tie(torch, mpi) == std::tie(o.torch, o.mpi);
}

bool GemmPoint::operator==(const GemmPoint& o) const {
  return std::tie(dtype, m, n, k, flops_per_s) == std::tie(o.dtype, o.m, o.n, o.k, o.flops_per_s);
}

bool CollectivePoint::operator==(const CollectivePoint& o) const {
  return std::tie(op, ranks, bytes, time_s, algbw_bytes_per_s, busbw_bytes_per_s) ==
         std::tie(o.op, o.ranks, o.bytes, o.time_s, o.algbw_bytes_per_s, o.busbw_bytes_per_s);
}

bool PassSpread::operator==(const PassSpread& o) const {
  return std::tie(gemm_median, copy, elementwise) == std::tie(o.gemm_median, o.copy, o.elementwise);
}

bool ProfileData::operator==(const ProfileData& o) const {
  return std::tie(name, date, machine, libraries, ranks, gemm, memory_bandwidth_bytes_per_s,
                  elementwise_bytes_per_s, passes, spread_across_passes, collectives) ==
         std::tie(o.name, o.date, o.machine, o.libraries, o.ranks, o.gemm,
                  o.memory_bandwidth_bytes_per_s, o.elementwise_bytes_per_s, o.passes,
                  o.spread_across_passes, o.collectives);
}

nlohmann::json machine_to_json(const ProfileMachine& m) {
  return {{"hostname", m.hostname}, {"cpu", m.cpu}, {"cores", m.cores}, {"device", m.device}};
}

nlohmann::json libraries_to_json(const ProfileLibraries& l) { return {{"torch", l.torch}, {"mpi", l.mpi}}; }

nlohmann::json profile_to_json(const ProfileData& p) {
  nlohmann::json j = {{"name", p.name},
                      {"date", p.date},
                      {"machine", machine_to_json(p.machine)},
                      {"libraries", libraries_to_json(p.libraries)},
                      {"ranks", p.ranks},
                      {"gemm", nlohmann::json::array()},
                      {"memory_bandwidth_bytes_per_s", p.memory_bandwidth_bytes_per_s},
                      {"collectives", nlohmann::json::array()}};
  for (const GemmPoint& g : p.gemm)
    j["gemm"].push_back(
        {{"dtype", g.dtype}, {"m", g.m}, {"n", g.n}, {"k", g.k}, {"flops_per_s", g.flops_per_s}});
  for (const CollectivePoint& c : p.collectives)
    j["collectives"].push_back({{"op", to_string(c.op)},
                                {"ranks", c.ranks},
                                {"bytes", c.bytes},
                                {"time_s", c.time_s},
                                {"algbw_bytes_per_s", c.algbw_bytes_per_s},
                                {"busbw_bytes_per_s", c.busbw_bytes_per_s}});
  if (p.elementwise_bytes_per_s) j["elementwise_bytes_per_s"] = *p.elementwise_bytes_per_s;
  if (p.passes) j["passes"] = *p.passes;
  if (p.spread_across_passes)
    j["spread_across_passes"] = {{"gemm_median", p.spread_across_passes->gemm_median},
                                 {"copy", p.spread_across_passes->copy},
                                 {"elementwise", p.spread_across_passes->elementwise}};
  return j;
}

ProfileData profile_from_json(const nlohmann::json& json, const std::string& where) {
  if (!json.is_object()) throw InputError(where, "", "expected a JSON object");
  const JsonFields f(json, where);
  ProfileData p;
  p.name = f.string("name");
  p.date = f.string("date");
  const JsonFields machine = object(f, "machine");
  p.machine.hostname = text(machine, "hostname");
  p.machine.cpu = text(machine, "cpu");
  p.machine.cores = machine.integer("cores", 0, 1 << 24);
  p.machine.device = text(machine, "device");
  const JsonFields libraries = object(f, "libraries");
  p.libraries.torch = text(libraries, "torch");
  p.libraries.mpi = text(libraries, "mpi");
  p.ranks = f.integer("ranks", 1, 1 << 24);
  const nlohmann::json& gemm = array(f, "gemm");
  for (size_t i = 0; i < gemm.size(); ++i) {
    const JsonFields g = entry(f, "gemm", gemm[i], i);
    GemmPoint point{g.string("dtype"), g.integer("m", 1, 1 << 30), g.integer("n", 1, 1 << 30),
                    g.integer("k", 1, 1 << 30), g.number("flops_per_s", 1, 1e20)};
    if (point.dtype != "fp32" && point.dtype != "bf16")
      throw InputError(g.where(), "dtype", "got \"" + point.dtype + "\"; allowed: fp32, bf16");
    p.gemm.push_back(point);
  }
  p.memory_bandwidth_bytes_per_s = f.number("memory_bandwidth_bytes_per_s", 1, 1e16);
  if (f.has("elementwise_bytes_per_s"))
    p.elementwise_bytes_per_s = f.number("elementwise_bytes_per_s", 1, 1e16);
  if (f.has("passes")) p.passes = f.integer("passes", 1, 1000);
  if (f.has("spread_across_passes")) {
    const JsonFields s = object(f, "spread_across_passes");
    p.spread_across_passes = PassSpread{s.number("gemm_median", 0, 1e12), s.number("copy", 0, 1e12),
                                        s.number("elementwise", 0, 1e12)};
  }
  const nlohmann::json& collectives = array(f, "collectives");
  for (size_t i = 0; i < collectives.size(); ++i) {
    const JsonFields c = entry(f, "collectives", collectives[i], i);
    p.collectives.push_back({collective_from_string(c, "op"), c.integer("ranks", 2, 1 << 24),
                             c.integer("bytes", 1, int64_t{10000000000000}),
                             c.number("time_s", 1e-12, 1e6), c.number("algbw_bytes_per_s", 0, 1e20),
                             c.number("busbw_bytes_per_s", 0, 1e20)});
  }
  return p;
}

}  // namespace sextant
