// Human-readable and JSON renderings of plans, ROI results and device reports, shared by
// `fathom plan`, `fathom devices` and anything else that wants to show them.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "plan/devices.h"
#include "core/format.h"
#include "plan/planner.h"

namespace fathom::plan {


std::string plan_to_text(const ModelDesc& model, const Plan& plan);
nlohmann::json plan_to_json(const ModelDesc& model, const Plan& plan);

std::string roi_to_text(const RoiInputs& in, const RoiResult& r);
nlohmann::json roi_to_json(const RoiInputs& in, const RoiResult& r);

std::string devices_to_text(const DeviceReport& r);
nlohmann::json devices_to_json(const DeviceReport& r);

std::string hardware_table_text(const std::vector<HardwareSpec>& table);
nlohmann::json hardware_to_json(const HardwareSpec& h);

}  // namespace fathom::plan
