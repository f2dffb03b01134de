// One allocation for a std::allocate_shared object, its reference count and extra bytes after
// them (the object's variable-size arrays or text), so a small shared object with a tail costs
// one malloc chunk instead of two.
//
// The size of the tail goes through a thread-local rather than the allocator's state: a
// stateless allocator takes no room in the control block (allocate_shared keeps a copy of a
// stateful one there, in every block). Usage, on one thread, with nothing allocated through a
// trailing_allocator in between:
//   trailing_request.extra = tail_bytes;
//   auto p = std::allocate_shared<T>(trailing_allocator<T>(), args...);
//   char* tail = trailing_request.at;   // also valid inside T's constructor: allocation comes first
// Used by lb/ (balancer and host blocks).
#pragma once

#include <cstddef>
#include <new>

namespace ewgw::lb {

struct trailing_request_t {
  std::size_t extra = 0;  // tail bytes the next allocation adds
  char* at = nullptr;     // where the last allocation's tail starts
};
inline thread_local trailing_request_t trailing_request;

// `TailAlign`: the alignment the tail starts at. The default (the default new alignment) lets
// the tail hold any fundamental type; a smaller one (what the tail's types need) wastes fewer
// bytes between the object and its tail.
template <class T, std::size_t TailAlign = __STDCPP_DEFAULT_NEW_ALIGNMENT__>
struct trailing_allocator {
  using value_type = T;
  template <class U>
  struct rebind {
    using other = trailing_allocator<U, TailAlign>;
  };

  trailing_allocator() = default;
  template <class U>
  trailing_allocator(const trailing_allocator<U, TailAlign>&) {}  // NOLINT: rebinding
  T* allocate(std::size_t n) {
    static_assert(TailAlign <= __STDCPP_DEFAULT_NEW_ALIGNMENT__ && (TailAlign & (TailAlign - 1)) == 0);
    constexpr std::size_t align = TailAlign;
    const std::size_t head = (sizeof(T) * n + align - 1) / align * align;
    char* p = static_cast<char*>(::operator new(head + trailing_request.extra));
    trailing_request.at = p + head;
    return reinterpret_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) { ::operator delete(static_cast<void*>(p)); }
  template <class U>
  bool operator==(const trailing_allocator<U, TailAlign>&) const {
    return true;
  }
};

}  // namespace ewgw::lb
