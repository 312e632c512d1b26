#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tollgate {

/// A hash map split by key hash into `Stripes` maps of its own, each a `std::unordered_map`
/// that grows on its own. A `std::unordered_map` doubles its buckets in one go and relinks
/// every entry when it does: at a million entries that stalls its owner for 100–200 ms, and
/// the directory's maps, which grow together, doubled at the same moment. A stripe holds
/// a `Stripes`th of the entries, so one rehash moves a `Stripes`th of them, and each stripe
/// has a load factor of its own, so that their rehashes fall at different moments.
///
/// The interface is the part of `std::unordered_map`'s that the directory uses, with forward
/// iterators over all stripes; iterators stay valid across inserts and erases of other
/// entries, as the standard map's do. Not thread-safe: `key_handles` adds a lock per stripe.
template <class Key, class T, std::size_t Stripes = 64, class Hash = std::hash<Key>>
class striped_map {
  static_assert(Stripes > 1 && (Stripes & (Stripes - 1)) == 0, "a power of two");

public:
  using map_type = std::unordered_map<Key, T, Hash>;
  using key_type = Key;
  using mapped_type = T;
  using value_type = typename map_type::value_type;
  using node_type = typename map_type::node_type;
  using size_type = std::size_t;

  template <bool Const>
  class basic_iterator {
    using maps = std::conditional_t<Const, const std::array<map_type, Stripes>,
                                    std::array<map_type, Stripes>>;
    using inner =
        std::conditional_t<Const, typename map_type::const_iterator, typename map_type::iterator>;

  public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = typename map_type::value_type;
    using difference_type = std::ptrdiff_t;
    using reference = std::conditional_t<Const, const value_type&, value_type&>;
    using pointer = std::conditional_t<Const, const value_type*, value_type*>;

    basic_iterator() = default;

    /// A non-const iterator converts to a const one.
    template <bool C = Const, class = std::enable_if_t<C>>
    basic_iterator(const basic_iterator<false>& other) // NOLINT: implicit, as the standard's
        : maps_(other.maps_)
        , stripe_(other.stripe_)
        , it_(other.it_) {}

    reference operator*() const { return *it_; }
    pointer operator->() const { return &*it_; }

    basic_iterator& operator++() {
      ++it_;
      settle();
      return *this;
    }

    basic_iterator operator++(int) {
      auto before = *this;
      ++*this;
      return before;
    }

    friend bool operator==(const basic_iterator& a, const basic_iterator& b) {
      return a.stripe_ == b.stripe_ && (a.stripe_ == Stripes || a.it_ == b.it_);
    }
    friend bool operator!=(const basic_iterator& a, const basic_iterator& b) { return !(a == b); }

  private:
    friend class striped_map;
    friend class basic_iterator<!Const>;

    basic_iterator(maps* all, std::size_t stripe, inner it)
        : maps_(all)
        , stripe_(stripe)
        , it_(it) {
      settle();
    }

    /// Moves past the ends of stripes to the next entry, or to the end of the map.
    void settle() {
      while (stripe_ < Stripes && it_ == (*maps_)[stripe_].end())
        if (++stripe_ < Stripes)
          it_ = (*maps_)[stripe_].begin();
    }

    maps* maps_ = nullptr;
    std::size_t stripe_ = Stripes;
    inner it_{};
  };

  using iterator = basic_iterator<false>;
  using const_iterator = basic_iterator<true>;

  /// Stripe i doubles its buckets at a load of 2^(i / Stripes), between 1 and 2 entries per
  /// bucket: stripes of about the same size would otherwise all reach their doubling points
  /// within a few thousand inserts of each other, and their rehashes would run back to back.
  /// Spread over the whole doubling, about one stripe rehashes per Stripes-th of the growth.
  striped_map() {
    for (std::size_t i = 0; i < Stripes; ++i)
      stripes_[i].max_load_factor(
          static_cast<float>(std::exp2(static_cast<double>(i) / static_cast<double>(Stripes))));
  }

  /// Where a sweep of the map goes on: a stripe and a bucket of it.
  struct cursor {
    std::size_t stripe = 0;
    std::size_t bucket = 0;
  };

  /// The stripe a key is in.
  static std::size_t stripe_of(const Key& key) {
    // The stripe takes the top bits of the hash, mixed (Fibonacci hashing), and the stripe's
    // own buckets its remainder modulo a prime: the two choices stay independent.
    auto mixed = static_cast<std::uint64_t>(Hash{}(key)) * 0x9E3779B97F4A7C15ull;
    return static_cast<std::size_t>(mixed >> (64 - bits()));
  }

  static constexpr std::size_t stripe_count() { return Stripes; }
  map_type& stripe(std::size_t index) { return stripes_[index]; }
  const map_type& stripe(std::size_t index) const { return stripes_[index]; }

  iterator begin() { return {&stripes_, 0, stripes_[0].begin()}; }
  iterator end() { return {}; }
  const_iterator begin() const { return {&stripes_, 0, stripes_[0].begin()}; }
  const_iterator end() const { return {}; }

  size_type size() const {
    size_type total = 0;
    for (const auto& part : stripes_)
      total += part.size();
    return total;
  }

  bool empty() const {
    for (const auto& part : stripes_)
      if (!part.empty())
        return false;
    return true;
  }

  iterator find(const Key& key) {
    auto s = stripe_of(key);
    auto it = stripes_[s].find(key);
    return it == stripes_[s].end() ? end() : iterator{&stripes_, s, it};
  }

  const_iterator find(const Key& key) const {
    auto s = stripe_of(key);
    auto it = stripes_[s].find(key);
    return it == stripes_[s].end() ? end() : const_iterator{&stripes_, s, it};
  }

  size_type count(const Key& key) const { return stripes_[stripe_of(key)].count(key); }

  T& operator[](const Key& key) { return stripes_[stripe_of(key)][key]; }

  template <class... Args>
  std::pair<iterator, bool> emplace(const Key& key, Args&&... args) {
    return try_emplace(key, std::forward<Args>(args)...);
  }

  template <class... Args>
  std::pair<iterator, bool> try_emplace(const Key& key, Args&&... args) {
    auto s = stripe_of(key);
    auto [it, added] = stripes_[s].try_emplace(key, std::forward<Args>(args)...);
    return {iterator{&stripes_, s, it}, added};
  }

  template <class K, class M>
  std::pair<iterator, bool> insert_or_assign(K&& key, M&& value) {
    auto s = stripe_of(key);
    auto [it, added] = stripes_[s].insert_or_assign(std::forward<K>(key), std::forward<M>(value));
    return {iterator{&stripes_, s, it}, added};
  }

  size_type erase(const Key& key) { return stripes_[stripe_of(key)].erase(key); }

  /// Erases the entry at `at`; returns the iterator to the entry after it.
  iterator erase(const_iterator at) {
    auto next = stripes_[at.stripe_].erase(at.it_);
    return {&stripes_, at.stripe_, next};
  }
  iterator erase(iterator at) { return erase(const_iterator{at}); }

  node_type extract(const Key& key) { return stripes_[stripe_of(key)].extract(key); }
  node_type extract(const_iterator at) { return stripes_[at.stripe_].extract(at.it_); }

  void clear() {
    for (auto& part : stripes_)
      part.clear();
  }

  /// Looks at the entries of the next `buckets` buckets from `at` on, stripe by stripe, and
  /// takes out those that satisfy `pred`, passing each to `out` as a node; `at` moves past
  /// them, so that sweeps that go on from where the last stopped go round the whole map a
  /// bounded slice at a time. After the map grew or shrank a sweep may look at some entries
  /// twice or skip some until the next round. Returns how many it took out.
  template <class Pred, class Out>
  size_type sweep(cursor& at, size_type buckets, Pred pred, Out out) {
    std::vector<Key> due;
    size_type total = 0;
    buckets = std::min(buckets, bucket_count()); // once round at most
    for (size_type looked = 0; looked < buckets; ++looked) {
      if (at.stripe >= Stripes)
        at = {};
      auto& part = stripes_[at.stripe];
      if (at.bucket < part.bucket_count()) {
        for (auto it = part.begin(at.bucket); it != part.end(at.bucket); ++it)
          if (pred(*it))
            due.push_back(it->first);
        for (auto& key : due)
          out(part.extract(key));
        total += due.size();
        due.clear();
      }
      if (++at.bucket >= part.bucket_count())
        at = {at.stripe + 1, 0};
    }
    return total;
  }

  /// All the buckets of all the stripes: a sweep of this many goes round the map once.
  size_type bucket_count() const {
    size_type total = 0;
    for (const auto& part : stripes_)
      total += part.bucket_count();
    return total;
  }

private:
  static constexpr int bits() {
    int n = 0;
    while ((std::size_t{1} << n) < Stripes)
      ++n;
    return n;
  }

  std::array<map_type, Stripes> stripes_;
};

} // namespace tollgate
