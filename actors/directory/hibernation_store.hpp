#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>

#include "actors/directory/striped_map.hpp"

namespace tollgate {

/// Idle keys or users kept as records instead of actors (hibernated): a few hundred bytes
/// each, where an actor with its behaviour and timers takes a few kilobytes. An actor spawned
/// again from its record continues where the last one stopped, without a storage read.
///
/// A record is kept for a fixed time after it is put; then a sweep hands it out to be
/// passivated. A sweep looks at a bounded slice of the records, continuing where the last
/// one stopped, so that no sweep stalls its owner however many records it keeps.
///
/// `Record::id()` is the record's own id field: the store keeps the id once, as its map key
/// (the field is empty while stored), and puts it back when the record leaves the store.
template <class Record>
class hibernation_store {
public:
  using clock = std::chrono::steady_clock;

  explicit hibernation_store(clock::duration keep = {})
      : keep_(keep) {}

  void keep_for(clock::duration keep) { keep_ = keep; }

  std::size_t size() const { return records_.size(); }
  bool empty() const { return records_.empty(); }
  bool contains(const std::string& id) const { return records_.count(id) > 0; }

  /// Keeps `record` (in place of any record with its id) for the keep time from `now`.
  void put(Record record, clock::time_point now = clock::now()) {
    std::string id = std::move(record.id());
    record.id().clear();
    records_.insert_or_assign(std::move(id), entry{std::move(record), now + keep_});
  }

  /// The record of `id`, taken out of the store; nothing if there is none.
  std::optional<Record> take(const std::string& id) {
    auto node = records_.extract(id);
    if (node.empty())
      return std::nullopt;
    return restored(std::move(node.key()), std::move(node.mapped().record));
  }

  /// The record of `id`, to change in place (its id field is empty), or null.
  Record* find(const std::string& id) {
    auto it = records_.find(id);
    return it == records_.end() ? nullptr : &it->second.record;
  }

  /// Takes out every record whose id satisfies `pred`, passing each to `out`.
  template <class Pred, class Out>
  void take_if(Pred pred, Out out) {
    for (auto it = records_.begin(); it != records_.end();) {
      if (!pred(it->first)) {
        ++it;
        continue;
      }
      auto node = records_.extract(it++);
      out(restored(std::move(node.key()), std::move(node.mapped().record)));
    }
  }

  /// Looks at up to `budget` buckets' worth of records from where the last sweep stopped,
  /// takes out those kept until `now` or earlier, and passes each to `expired`. Returns how
  /// many it took out. A sweep after the store grew or shrank may look at some records twice
  /// or skip some until the next round: no record is kept much past its time.
  template <class Out>
  std::size_t sweep(std::size_t budget, Out expired, clock::time_point now = clock::now()) {
    return records_.sweep(
        cursor_, budget, [&](const auto& kept) { return kept.second.until <= now; },
        [&](auto node) {
          expired(restored(std::move(node.key()), std::move(node.mapped().record)));
        });
  }

private:
  struct entry {
    Record record;
    clock::time_point until;
  };

  static Record restored(std::string id, Record record) {
    record.id() = std::move(id);
    return record;
  }

  /// Striped: a million hibernated keys rehash a stripe at a time (see striped_map).
  striped_map<std::string, entry> records_;
  clock::duration keep_;
  typename striped_map<std::string, entry>::cursor cursor_; ///< Where the next sweep starts.
};

} // namespace tollgate
