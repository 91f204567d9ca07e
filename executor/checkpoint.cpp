// safetensors reading and writing, the checkpoint layout on disk, and pruning old checkpoints.
#include "executor/checkpoint.h"

#include <algorithm>
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

// The step of a folder named as save_checkpoint names it ("step-" + std::to_string(N)),
// or -1 for any other name.
int64_t step_of(const std::string& name) {
  const std::string prefix = "step-";
  if (name.rfind(prefix, 0) != 0) return -1;
  const std::string digits = name.substr(prefix.size());
  if (digits.empty() || digits.size() > 18 ||
      digits.find_first_not_of("0123456789") != std::string::npos ||
      (digits.size() > 1 && digits[0] == '0'))
    return -1;
  return std::stoll(digits);
}

// The files save_checkpoint writes into a step folder, finished or cut short.
bool is_checkpoint_file(std::string name) {
  const std::string tmp = ".tmp", prefix = "rank-", suffix = ".safetensors";
  auto ends_with = [](const std::string& s, const std::string& end) {
    return s.size() >= end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
  };
  if (ends_with(name, tmp)) name.resize(name.size() - tmp.size());
  if (name == "manifest.json") return true;
  if (name.rfind(prefix, 0) != 0 || !ends_with(name, suffix)) return false;
  const std::string rank = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  return !rank.empty() && rank.find_first_not_of("0123456789") == std::string::npos;
}

// What `latest` says, without trailing blanks; "" if it cannot be read.
std::string read_latest(const fs::path& dir) {
  std::ifstream in(dir / "latest", std::ios::binary);
  std::string name;
  if (!in || !std::getline(in, name)) return "";
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r' || name.back() == ' '))
    name.pop_back();
  return name;
}

struct CheckpointFolder {
  int64_t step = 0;
  fs::path path;
  bool complete = false;  // has its manifest
};

// DIR's sextant checkpoint folders: `step-N` directories (not links) that hold nothing but
// regular files save_checkpoint writes. Anything else is not ours and is left out. A
// failure to list DIR is added to `problems`.
std::vector<CheckpointFolder> checkpoint_folders(const fs::path& dir,
                                                 std::vector<std::string>& problems) {
  std::vector<CheckpointFolder> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    const int64_t step = step_of(it->path().filename().string());
    if (step < 0 || it->symlink_status(type_ec).type() != fs::file_type::directory) continue;
    CheckpointFolder folder{step, it->path(), false};
    bool ours = true;
    std::error_code inner;
    for (fs::directory_iterator f(folder.path, inner), f_end; ours && !inner && f != f_end;
         f.increment(inner)) {
      const std::string name = f->path().filename().string();
      ours =
          f->symlink_status(type_ec).type() == fs::file_type::regular && is_checkpoint_file(name);
      folder.complete = folder.complete || name == "manifest.json";
    }
    if (ours && !inner) out.push_back(folder);
  }
  if (ec)
    problems.push_back("cannot list " + dir.string() +
                       " to delete old checkpoints: " + ec.message());
  return out;
}

}  // namespace

std::vector<std::string> prune_checkpoints(const std::string& dir, int64_t keep) {
  if (keep < 1) throw std::invalid_argument("prune_checkpoints: keep must be at least 1");
  const int64_t latest = step_of(read_latest(dir));
  std::vector<std::string> problems;
  std::vector<CheckpointFolder> folders = checkpoint_folders(dir, problems);
  const bool latest_whole =
      std::any_of(folders.begin(), folders.end(),
                  [&](const CheckpointFolder& f) { return f.step == latest && f.complete; });
  if (latest < 0 || !latest_whole) return problems;  // no checkpoint to be sure of: delete nothing
  std::sort(folders.begin(), folders.end(),
            [](const CheckpointFolder& a, const CheckpointFolder& b) { return a.step > b.step; });
  int64_t kept = 0;
  for (const CheckpointFolder& f : folders) {
    // Newer than latest: a write in progress, or a run `latest` was moved back from.
    if (f.step > latest) continue;
    // Latest comes first (the newest complete one), then the newest complete before it.
    if (f.step == latest || (f.complete && kept < keep)) {
      ++kept;
      continue;
    }
    std::error_code ec;
    fs::remove(f.path / "manifest.json", ec);  // first: a folder half deleted reads as incomplete
    if (!ec) fs::remove_all(f.path, ec);
    if (ec)
      problems.push_back("cannot delete old checkpoint " + f.path.string() + ": " + ec.message());
  }
  return problems;
}

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

std::vector<std::string> save_checkpoint(const std::string& dir, int64_t step,
                                         const NamedTensors& state, const nlohmann::json& identity,
                                         int64_t keep, Comm& world) {
  const std::string name = "step-" + std::to_string(step);
  const fs::path folder = fs::path(dir) / name;
  if (world.rank() == 0) fs::create_directories(folder);
  world.barrier();
  write_safetensors((folder / ("rank-" + std::to_string(world.rank()) + ".safetensors")).string(), state,
                    {{"step", std::to_string(step)}});
  world.barrier();
  std::vector<std::string> problems;
  if (world.rank() == 0) {
    nlohmann::json manifest = {{"format", "sextant-checkpoint 1"}, {"step", step}, {"world_size", world.size()},
                               {"identity", identity}};
    write_atomically((folder / "manifest.json").string(), manifest.dump(2) + "\n");
    write_atomically((fs::path(dir) / "latest").string(), name + "\n");
    problems = prune_checkpoints(dir, keep);  // only now: the new checkpoint is whole and latest
  }
  world.barrier();
  return problems;
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
