// Reading JSON input files with one clear error per bad field.
// Every reader names the file and the field, and says what is allowed.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace sextant {

// A JSON object read from `where` (a file path or a label such as "cluster dgx-a100-80gb").
class JsonFields {
 public:
  JsonFields(const nlohmann::json& object, std::string where);

  // Parses text as a JSON object; throws InputError for empty, malformed or non-object text.
  static nlohmann::json parse_object(const std::string& text, const std::string& where);
  // Reads a file and parses it as above; throws InputError if it cannot be read.
  static nlohmann::json load_object_file(const std::string& path);

  bool has(const std::string& key) const;
  // Integers in [min_value, max_value]; JSON floats with an integral value are accepted.
  int64_t integer(const std::string& key, int64_t min_value, int64_t max_value) const;
  int64_t integer_or(const std::string& key, int64_t fallback, int64_t min_value,
                     int64_t max_value) const;
  double number(const std::string& key, double min_value, double max_value) const;
  double number_or(const std::string& key, double fallback, double min_value,
                   double max_value) const;
  bool boolean_or(const std::string& key, bool fallback) const;
  std::string string(const std::string& key) const;
  std::string string_or(const std::string& key, const std::string& fallback) const;
  JsonFields object(const std::string& key) const;

  const std::string& where() const { return where_; }
  const nlohmann::json& json() const { return object_; }

 private:
  const nlohmann::json& value(const std::string& key) const;
  const nlohmann::json& object_;
  std::string where_;
};

}  // namespace sextant
