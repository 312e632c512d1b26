#pragma once

#include <pthread.h>

namespace tollgate {

/// Names the calling thread as ps, top -H, perf and /proc show it (Linux keeps 15
/// characters), so that a profile tells the gateway's threads apart.
inline void name_this_thread(const char* name) {
  pthread_setname_np(pthread_self(), name);
}

/// The same, on the first call from each thread only (one thread-local test after that):
/// for threads the gateway does not start itself, named from the first work they run.
inline void name_this_thread_once(const char* name) {
  thread_local bool named = false;
  if (!named) {
    name_this_thread(name);
    named = true;
  }
}

} // namespace tollgate
