#include "actors/provider/provider_supervisor.hpp"

#include <spdlog/spdlog.h>

#include "actors/router/router_actor.hpp"

namespace tollgate {

namespace {

using self_ptr = caf::stateful_actor<provider_supervisor_state>*;

constexpr auto max_backoff = std::chrono::milliseconds(10'000);
/// A provider that ran this long before crashing starts over at the shortest backoff.
constexpr auto healthy_run = std::chrono::seconds(60);

void start_child(self_ptr self, const std::string& name) {
  auto& c = self->state.children.at(name);
  auto spawn = provider_kind(c.ctx.config.kind);
  if (!spawn) {
    spdlog::error("provider {}: kind '{}' is not supported", name, c.ctx.config.kind);
    return;
  }
  c.handle = spawn(self, c.ctx);
  c.started = std::chrono::steady_clock::now();
  self->monitor(c.handle);
  self->send(self->state.router, provider_up_atom_v, name, c.handle);
}

/// The upstream loop of provider `p`: the node's shared one, or, if `p` caps its connections,
/// a loop of its own (run where the shared one runs), since curl caps connections per loop.
std::shared_ptr<upstream_loop> loop_for(const config::provider_config& p,
                                        const std::shared_ptr<upstream_loop>& shared) {
  if (p.max_connections <= 0)
    return shared;
  return shared->sibling(static_cast<long>(p.max_connections));
}

} // namespace

caf::behavior provider_supervisor(caf::stateful_actor<provider_supervisor_state>* self,
                                  std::vector<config::provider_config> providers,
                                  std::shared_ptr<upstream_loop> loop, caf::actor router) {
  auto& st = self->state;
  st.router = std::move(router);
  config::provider_config test_echo;
  test_echo.name = test_provider_name;
  test_echo.kind = "echo";
  providers.push_back(test_echo);
  for (auto& p : providers) {
    auto name = p.name;
    auto own_loop = loop_for(p, loop);
    st.children[name] =
        provider_supervisor_state::child(provider_context{std::move(p), std::move(own_loop)});
    start_child(self, name);
  }
  self->set_down_handler([=](caf::down_msg& msg) {
    for (auto& [name, c] : self->state.children) {
      if (c.handle.address() != msg.source)
        continue;
      c.handle = nullptr;
      if (std::chrono::steady_clock::now() - c.started > healthy_run)
        c.backoff = std::chrono::milliseconds(100);
      spdlog::error("provider {} stopped ({}); restarting in {} ms", name, to_string(msg.reason),
                    c.backoff.count());
      self->delayed_send(self, c.backoff, restart_atom_v, name);
      c.backoff = std::min(c.backoff * 2, max_backoff);
      return;
    }
  });
  self->set_exit_handler([=](caf::exit_msg& msg) {
    for (auto& [name, c] : self->state.children)
      if (c.handle)
        self->send_exit(c.handle, msg.reason);
    self->quit(msg.reason);
  });
  return {
      [=](restart_atom, const std::string& name) {
        if (self->state.children.count(name) > 0)
          start_child(self, name);
      },
      // An admin's forced restart: the provider is killed and comes back as after a crash.
      [=](caf::delete_atom, const std::string& name) -> bool {
        auto it = self->state.children.find(name);
        if (it == self->state.children.end() || !it->second.handle)
          return false;
        self->send_exit(it->second.handle, caf::exit_reason::kill);
        return true;
      },
      // A reloaded configuration: providers not running yet are started.
      [=](reload_atom, const std::vector<config::provider_config>& reloaded) {
        for (const auto& p : reloaded) {
          if (self->state.children.count(p.name) > 0)
            continue;
          self->state.children[p.name] =
              provider_supervisor_state::child(provider_context{p, loop_for(p, loop)});
          start_child(self, p.name);
        }
      },
  };
}

} // namespace tollgate
