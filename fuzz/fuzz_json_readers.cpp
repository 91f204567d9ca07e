// libFuzzer target for the input readers: model configs, cluster descriptions, measured
// profiles, plan files and --fix strings. Every input must either parse or raise InputError; anything else
// (another exception, a crash, undefined behaviour) is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include "cost_model/cluster_spec.h"
#include "cost_model/error.h"
#include "cost_model/json_fields.h"
#include "cost_model/measured_profile.h"
#include "cost_model/model_graph.h"
#include "cost_model/model_spec.h"
#include "planner/plan_file.h"
#include "planner/search.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    sextant::parse_fixed_axes(text);
  } catch (const sextant::InputError&) {
  }
  nlohmann::json json;
  try {
    json = sextant::JsonFields::parse_object(text, "fuzz.json");
  } catch (const sextant::InputError&) {
    return 0;
  }
  try {
    sextant::ModelSpec m = sextant::model_spec_from_json(json, "fuzz.json");
    sextant::ModelGraph graph(m);
    if (graph.total_params() != m.total_params()) __builtin_trap();
  } catch (const sextant::InputError&) {
  }
  try {
    sextant::cluster_spec_from_json(json, "fuzz.json");
  } catch (const sextant::InputError&) {
  }
  try {
    sextant::MeasuredProfile(sextant::profile_from_json(json, "fuzz.json"), 1, "fuzz.json");
  } catch (const sextant::InputError&) {
  }
  try {  // what the reader accepts, the writer writes back unchanged in meaning
    const sextant::PlanFile plan = sextant::plan_file_from_json(json, "fuzz.json");
    const nlohmann::json again = sextant::plan_file_to_json(plan);
    if (sextant::plan_file_to_json(sextant::plan_file_from_json(again, "again.json")) != again) __builtin_trap();
  } catch (const sextant::InputError&) {
  }
  return 0;
}
