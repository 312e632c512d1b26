#include <cstdio>

#include "config/config.hpp"
#include "http/gateway.hpp"

int main(int argc, char** argv) {
  using namespace tollgate;
  try {
    auto cmd = config::load_config(argc, argv, config::environment());
    if (cmd.help) {
      std::fputs(config::usage().c_str(), stdout);
      return 0;
    }
    if (cmd.version) {
      std::printf("tollgate %s\n", std::string(config::version()).c_str());
      return 0;
    }
    return http::run_gateway(cmd.config, [argc, argv] {
      return config::load_config(argc, argv, config::environment()).config;
    });
  } catch (const config::config_error& e) {
    std::fprintf(stderr, "tollgate: %s\n", e.what());
    return 2;
  }
}
