// JsonFields: typed, range-checked access to JSON input with file/field error messages.
#include "cost_model/json_fields.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "cost_model/error.h"

namespace sextant {

JsonFields::JsonFields(const nlohmann::json& object, std::string where)
    : object_(object), where_(std::move(where)) {}

nlohmann::json JsonFields::parse_object(const std::string& text, const std::string& where) {
  if (text.find_first_not_of(" \t\r\n") == std::string::npos)
    throw InputError(where, "", "file is empty; expected a JSON object");
  nlohmann::json parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded())
    throw InputError(where, "", "not valid JSON; expected a JSON object");
  if (!parsed.is_object()) throw InputError(where, "", "expected a JSON object at the top level");
  return parsed;
}

nlohmann::json JsonFields::load_object_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path, "", "cannot open file for reading");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw InputError(path, "", "cannot read file (is it a directory?)");
  return parse_object(text.str(), path);
}

bool JsonFields::has(const std::string& key) const {
  auto it = object_.find(key);
  return it != object_.end() && !it->is_null();
}

const nlohmann::json& JsonFields::value(const std::string& key) const {
  auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) throw InputError(where_, key, "missing required field");
  return *it;
}

int64_t JsonFields::integer(const std::string& key, int64_t min_value, int64_t max_value) const {
  const nlohmann::json& v = value(key);
  const std::string allowed =
      "expected an integer in [" + std::to_string(min_value) + ", " + std::to_string(max_value) + "]";
  double as_double = 0;
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(max_value))
      throw InputError(where_, key, allowed);
    int64_t i = v.get<int64_t>();
    if (i < min_value || i > max_value) throw InputError(where_, key, allowed);
    return i;
  }
  if (!v.is_number_float()) throw InputError(where_, key, allowed);
  as_double = v.get<double>();
  if (!std::isfinite(as_double) || std::floor(as_double) != as_double ||
      as_double < static_cast<double>(min_value) || as_double > static_cast<double>(max_value))
    throw InputError(where_, key, allowed);
  return static_cast<int64_t>(as_double);
}

int64_t JsonFields::integer_or(const std::string& key, int64_t fallback, int64_t min_value,
                               int64_t max_value) const {
  return has(key) ? integer(key, min_value, max_value) : fallback;
}

double JsonFields::number(const std::string& key, double min_value, double max_value) const {
  const nlohmann::json& v = value(key);
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < min_value ||
      v.get<double>() > max_value) {
    std::ostringstream allowed;
    allowed << "expected a number in [" << min_value << ", " << max_value << "]";
    throw InputError(where_, key, allowed.str());
  }
  return v.get<double>();
}

double JsonFields::number_or(const std::string& key, double fallback, double min_value,
                             double max_value) const {
  return has(key) ? number(key, min_value, max_value) : fallback;
}

bool JsonFields::boolean_or(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const nlohmann::json& v = value(key);
  if (!v.is_boolean()) throw InputError(where_, key, "expected true or false");
  return v.get<bool>();
}

std::string JsonFields::string(const std::string& key) const {
  const nlohmann::json& v = value(key);
  if (!v.is_string() || v.get<std::string>().empty())
    throw InputError(where_, key, "expected a non-empty string");
  return v.get<std::string>();
}

std::string JsonFields::string_or(const std::string& key, const std::string& fallback) const {
  return has(key) ? string(key) : fallback;
}

JsonFields JsonFields::object(const std::string& key) const {
  const nlohmann::json& v = value(key);
  if (!v.is_object()) throw InputError(where_, key, "expected a JSON object");
  return JsonFields(v, where_);
}

}  // namespace sextant
