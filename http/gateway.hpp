#pragma once

#include <functional>

#include "config/config.hpp"

namespace tollgate::http {

/// Runs a gateway node until SIGINT or SIGTERM: migrates the store, settles the admin key,
/// spawns the node's actors and serves HTTP. Returns the process exit code.
/// `reread` reads the configuration again (file, environment, flags) on a reload.
int run_gateway(const config::gateway_config& cfg, std::function<config::gateway_config()> reread);

} // namespace tollgate::http
