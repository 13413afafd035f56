// Reading data.pkl, which is untrusted input: a pickle VM restricted to the
// opcodes and globals a state dict needs (torch's weights-only set). Anything
// else is a ckptw::FormatError naming the offending opcode or global; nothing
// is executed. Nesting depth and memo size are bounded.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ckptw::detail {

/// A tensor as data.pkl describes it (no data).
struct PickledTensor {
  std::string storage_key;        ///< record data/<storage_key>
  std::string dtype;              ///< torch name: "float32"
  std::size_t element_size = 0;
  std::string location;           ///< "cpu", "cuda:0"
  std::uint64_t storage_nbytes = 0;
  std::int64_t storage_offset = 0;  ///< in elements
  std::vector<std::int64_t> sizes;
  std::vector<std::int64_t> strides;
  bool requires_grad = false;
  bool parameter = false;           ///< rebuilt by _rebuild_parameter (torch.nn.Parameter)
  bool neg = false;                 ///< the rebuild's metadata: lazy negative bit
  bool conj = false;                ///< and lazy conjugate bit
  /// The element size the persistent id's storage type gives (1 for an
  /// UntypedStorage, half the size for complex dtypes): the unit torch
  /// byte-swaps a storage of a big-endian file in.
  std::size_t swap_unit = 1;
  bool untyped_storage = false;     ///< the persistent id names torch.storage.UntypedStorage (v3)
};

struct PickleValue;
/// Values live in their PickleTree's arena; a pickle may reference a value
/// from several places (memo), and even cyclically, without leaking.
using PickleValuePtr = PickleValue*;

struct PickleValue {
  /// kReduced: an object of the weights-only set rebuilt by a REDUCE (`text`
  /// names the callable, e.g. "torch.Size"; `items` are its checked arguments).
  enum class Kind { kNone, kBool, kInt, kBigInt, kFloat, kString, kList, kTuple, kDict, kTensor, kGlobal, kStorage,
                    kReduced };
  Kind kind = Kind::kNone;
  std::uint32_t depth = 0;             ///< containers nested inside this one
  bool boolean = false;
  std::int64_t integer = 0;
  double floating = 0;
  std::string text;                    ///< kString; kGlobal as "module.name"; kBigInt: LONG1 bytes
  std::vector<PickleValuePtr> items;   ///< kList, kTuple
  std::vector<std::pair<PickleValuePtr, PickleValuePtr>> entries;  ///< kDict, insertion order
  bool ordered = false;                ///< kDict made by collections.OrderedDict
  /// Ordered kDict: the dict its BUILD set (its __dict__). kTensor: the
  /// attributes _rebuild_from_type_v2 / _rebuild_parameter_with_state set (a
  /// kDict with str keys), or null.
  PickleValuePtr attributes = nullptr;
  PickledTensor tensor;                ///< kTensor; kStorage uses the storage fields
};

/// Every value of one pickle, owned together.
struct PickleTree {
  std::deque<PickleValue> arena;  ///< a deque: addresses stay valid as it grows
  PickleValuePtr root = nullptr;
};

/// Containers nested deeper than this are refused (by the VM, and by every
/// walk over a tree, which also stops a cyclic pickle).
inline constexpr std::size_t kMaxPickleDepth = 1000;

/// Runs the restricted VM over `bytes`; `path` names the file in errors.
std::unique_ptr<PickleTree> read_pickle(std::string_view bytes, const std::string& path);

}  // namespace ckptw::detail
