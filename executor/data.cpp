// Token sources.
#include "executor/data.h"

#include <cstring>
#include <fstream>

#include "cost_model/error.h"

namespace sextant {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

class SyntheticSource final : public TokenSource {
 public:
  explicit SyntheticSource(int64_t vocab) : vocab_(static_cast<uint64_t>(vocab)) {}
  void sample(int64_t index, int64_t length, int64_t* out) const override {
    const uint64_t start = splitmix64(static_cast<uint64_t>(index)) % vocab_;
    const uint64_t stride = 1 + splitmix64(static_cast<uint64_t>(index) ^ 0x5bd1e995ULL) % 7;
    for (int64_t j = 0; j < length; ++j)
      out[j] = static_cast<int64_t>((start + static_cast<uint64_t>(j) * stride) % vocab_);
  }

 private:
  uint64_t vocab_;
};

// Sample i starts at token (i · length) modulo the last full window.
template <typename T>
class FileSource final : public TokenSource {
 public:
  FileSource(std::vector<T> tokens, int64_t vocab, std::string path)
      : tokens_(std::move(tokens)), vocab_(vocab), path_(std::move(path)) {}
  void sample(int64_t index, int64_t length, int64_t* out) const override {
    const int64_t windows = static_cast<int64_t>(tokens_.size()) - length + 1;
    const int64_t start = (index % windows) * length % windows;
    for (int64_t j = 0; j < length; ++j) {
      out[j] = static_cast<int64_t>(tokens_[static_cast<size_t>(start + j)]);
      if (out[j] >= vocab_)
        throw InputError("--data", path_, "token " + std::to_string(out[j]) + " at position " +
                                              std::to_string(start + j) + " is outside the vocabulary of " +
                                              std::to_string(vocab_));
    }
  }

 private:
  std::vector<T> tokens_;
  int64_t vocab_;
  std::string path_;
};

std::vector<char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("--data", path, "cannot open file for reading");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw InputError("--data", path, "cannot read file");
  return bytes;
}

}  // namespace

std::unique_ptr<TokenSource> open_token_source(const std::string& spec, int64_t vocab, int64_t seq_len) {
  if (spec == "synthetic") return std::make_unique<SyntheticSource>(vocab);
  const std::vector<char> bytes = read_all(spec);
  const bool token_file = spec.size() > 4 && spec.compare(spec.size() - 4, 4, ".bin") == 0;
  if (token_file) {
    size_t header = 0;
    int32_t magic = 0;
    if (bytes.size() >= 1024) std::memcpy(&magic, bytes.data(), sizeof magic);
    if (magic == 20240520) header = 1024;  // llm.c: 256 int32 (magic, version, count, ...)
    if ((bytes.size() - header) % 2 != 0) throw InputError("--data", spec, "uint16 token file has an odd size");
    std::vector<uint16_t> tokens((bytes.size() - header) / 2);
    std::memcpy(tokens.data(), bytes.data() + header, tokens.size() * 2);
    if (static_cast<int64_t>(tokens.size()) < seq_len + 1)
      throw InputError("--data", spec, "has " + std::to_string(tokens.size()) + " tokens; needs at least seq_len + 1 = " +
                                           std::to_string(seq_len + 1));
    return std::make_unique<FileSource<uint16_t>>(std::move(tokens), vocab, spec);
  }
  if (vocab < 256) throw InputError("--data", spec, "a text file is read as bytes: needs vocab_size >= 256");
  if (static_cast<int64_t>(bytes.size()) < seq_len + 1)
    throw InputError("--data", spec, "has " + std::to_string(bytes.size()) + " bytes; needs at least seq_len + 1 = " +
                                         std::to_string(seq_len + 1));
  std::vector<uint8_t> tokens(bytes.begin(), bytes.end());
  return std::make_unique<FileSource<uint8_t>>(std::move(tokens), vocab, spec);
}

torch::Tensor load_samples(const TokenSource& source, int64_t first, int64_t count, int64_t seq_len) {
  torch::Tensor out = torch::empty({count, seq_len + 1}, torch::kLong);
  for (int64_t i = 0; i < count; ++i) source.sample(first + i, seq_len + 1, out[i].data_ptr<int64_t>());
  return out;
}

}  // namespace sextant
