// safetensors reading and writing, and the checkpoint layout on disk.
#include "executor/checkpoint.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cost_model/error.h"
#include "cost_model/json_fields.h"

namespace sextant {
namespace {

namespace fs = std::filesystem;

const char* dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat: return "F32";
    case torch::kDouble: return "F64";
    case torch::kLong: return "I64";
    default: throw std::invalid_argument("safetensors: unsupported dtype");
  }
}

torch::ScalarType dtype_of(const std::string& name, const std::string& path) {
  if (name == "F32") return torch::kFloat;
  if (name == "F64") return torch::kDouble;
  if (name == "I64") return torch::kLong;
  throw InputError(path, "dtype", "unsupported safetensors dtype " + name);
}

void write_atomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) throw InputError("--checkpoint-dir", tmp, "cannot write");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw InputError("--checkpoint-dir", path, "cannot rename into place");
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("--checkpoint-dir", path, "cannot open");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

void write_safetensors(const std::string& path, const NamedTensors& tensors, const nlohmann::json& metadata) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& [name, t] : tensors) {
    torch::Tensor c = t.detach().contiguous();
    const size_t begin = data.size(), bytes = static_cast<size_t>(c.numel()) * c.element_size();
    data.append(static_cast<const char*>(c.data_ptr()), bytes);
    header[name] = {{"dtype", dtype_name(c.scalar_type())}, {"shape", c.sizes().vec()}, {"data_offsets", {begin, begin + bytes}}};
  }
  nlohmann::json meta = nlohmann::json::object();
  for (auto it = metadata.begin(); it != metadata.end(); ++it)  // safetensors metadata values are strings
    meta[it.key()] = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
  header["__metadata__"] = meta;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  uint64_t length = text.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((length >> (8 * i)) & 0xff);
  write_atomically(path, out + text + data);
}

NamedTensors read_safetensors(const std::string& path) {
  const std::string bytes = slurp(path);
  if (bytes.size() < 8) throw InputError(path, "", "not a safetensors file (too short)");
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = (length << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  if (length > bytes.size() - 8) throw InputError(path, "", "safetensors header longer than the file");
  const nlohmann::json header = JsonFields::parse_object(bytes.substr(8, length), path);
  const size_t data_start = 8 + length;
  std::vector<std::pair<size_t, std::pair<std::string, torch::Tensor>>> found;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const nlohmann::json& e = it.value();
    const torch::ScalarType type = dtype_of(e.at("dtype").get<std::string>(), path);
    const std::vector<int64_t> shape = e.at("shape").get<std::vector<int64_t>>();
    const size_t begin = e.at("data_offsets").at(0), end = e.at("data_offsets").at(1);
    torch::Tensor t = torch::empty(shape, type);
    if (end < begin || data_start + end > bytes.size() || end - begin != static_cast<size_t>(t.numel()) * t.element_size())
      throw InputError(path, it.key(), "data_offsets do not match the shape and the file");
    std::memcpy(t.data_ptr(), bytes.data() + data_start + begin, end - begin);
    found.push_back({begin, {it.key(), t}});
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  NamedTensors out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

void save_checkpoint(const std::string& dir, int64_t step, const NamedTensors& state, const nlohmann::json& identity,
                     Comm& world) {
  const std::string name = "step-" + std::to_string(step);
  const fs::path folder = fs::path(dir) / name;
  if (world.rank() == 0) fs::create_directories(folder);
  world.barrier();
  write_safetensors((folder / ("rank-" + std::to_string(world.rank()) + ".safetensors")).string(), state,
                    {{"step", std::to_string(step)}});
  world.barrier();
  if (world.rank() == 0) {
    nlohmann::json manifest = {{"format", "sextant-checkpoint 1"}, {"step", step}, {"world_size", world.size()},
                               {"identity", identity}};
    write_atomically((folder / "manifest.json").string(), manifest.dump(2) + "\n");
    write_atomically((fs::path(dir) / "latest").string(), name + "\n");
  }
  world.barrier();
}

std::pair<int64_t, NamedTensors> load_checkpoint(const std::string& dir, const nlohmann::json& identity, Comm& world) {
  const fs::path latest = fs::path(dir) / "latest";
  if (!fs::exists(latest)) throw InputError("--resume", dir, "no checkpoint here (no 'latest' file)");
  std::string name = slurp(latest.string());
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  const fs::path folder = fs::path(dir) / name;
  const nlohmann::json manifest = JsonFields::load_object_file((folder / "manifest.json").string());
  if (manifest.at("world_size") != world.size() || manifest.at("identity") != identity)
    throw InputError("--resume", (folder / "manifest.json").string(),
                     "checkpoint was written by another model, layout or world size than this plan's");
  NamedTensors state = read_safetensors((folder / ("rank-" + std::to_string(world.rank()) + ".safetensors")).string());
  return {manifest.at("step").get<int64_t>(), std::move(state)};
}

}  // namespace sextant
