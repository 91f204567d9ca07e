// Training data, deterministic by global sample index, so every layout sees the same
// batches: sample i is the same tokens whatever dp, micro-batch or step produced it.
//   synthetic        arithmetic token sequences (learnable), from a hash of i
//   a .bin file      uint16 tokens: llm.c format (256 int32 header, magic 20240520) or raw
//   any other file   its bytes as tokens (vocabulary of at least 256)
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace sextant {

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  // Writes `length` tokens of sample `index` to `out`.
  virtual void sample(int64_t index, int64_t length, int64_t* out) const = 0;
};

// "synthetic" or a path. Throws InputError (field --data) for unreadable or unusable files.
std::unique_ptr<TokenSource> open_token_source(const std::string& spec, int64_t vocab_size, int64_t seq_len);

// Samples [first, first + count) as int64 [count, seq_len + 1]: inputs are [:, :-1],
// targets [:, 1:].
torch::Tensor load_samples(const TokenSource& source, int64_t first, int64_t count, int64_t seq_len);

}  // namespace sextant
