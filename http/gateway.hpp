#pragma once

#include "config/config.hpp"

namespace tollgate::http {

/// Runs a gateway node until SIGINT or SIGTERM: migrates the store, settles the admin key,
/// spawns the node's actors and serves HTTP. Returns the process exit code.
int run_gateway(const config::gateway_config& cfg);

} // namespace tollgate::http
