// The one typed error for bad user input. Library code throws it; only main turns it
// into a message line and exit status 2.
#pragma once

#include <stdexcept>
#include <string>

namespace sextant {

// Input that the user can fix: names where (file), which field, and what is allowed.
class InputError : public std::runtime_error {
 public:
  InputError(const std::string& where, const std::string& field, const std::string& what)
      : std::runtime_error(format(where, field, what)) {}

 private:
  static std::string format(const std::string& where, const std::string& field,
                            const std::string& what) {
    std::string out = where;
    if (!field.empty()) out += (out.empty() ? "" : ": ") + field;
    return out + ": " + what;
  }
};

}  // namespace sextant
