// Value: a Python object as torch.save pickles it. It is the planner's one
// input (a StateDict is converted into it; so will the Python binding's
// objects be) and what CheckpointReader::read_value returns, so that a file
// read and written again keeps what IValue cannot say: int-keyed dicts next
// to string-keyed ones, collections.OrderedDict with its attributes (the
// `_metadata` of module.state_dict()), and object identity.
//
// Identity: one Value reached twice (the same pointer) is one Python object:
// it is pickled once and fetched from the pickle memo afterwards, as CPython's
// pickler does (all param_groups sharing one `betas` tuple; a tensor in two
// places). Equal but distinct Values stay distinct. Strings are the
// exception: they are memoized by value, as CPython's interned strings are.
// A Value is immutable once made; cycles cannot be built.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include "ckptw/export.hpp"
#include "ckptw/types.hpp"

namespace ckptw {

class CKPTW_EXPORT Value {
 public:
  enum class Kind { kNone, kBool, kInt, kBigInt, kFloat, kString, kTensor, kParameter, kList, kTuple, kDict, kOrderedDict };
  using Ptr = std::shared_ptr<const Value>;
  using Items = std::vector<Ptr>;
  using Entries = std::vector<std::pair<Ptr, Ptr>>;

  static Ptr none();
  static Ptr boolean(bool value);
  static Ptr integer(std::int64_t value);
  /// An int beyond int64 (torch.initial_seed() is a uint64): its bytes as
  /// pickle's LONG1 holds them, little-endian two's complement (redundant
  /// sign bytes are dropped). Fits int64: a kInt.
  static Ptr big_integer(std::string little_endian_bytes);
  /// integer(), or big_integer() above INT64_MAX.
  static Ptr unsigned_integer(std::uint64_t value);
  static Ptr floating(double value);
  static Ptr string(std::string value);
  static Ptr tensor(at::Tensor value);
  /// torch.nn.Parameter (state_dict(keep_vars=True)): `data` and whether the
  /// parameter requires grad; as_tensor() gives `data` with that flag set.
  static Ptr parameter(at::Tensor data, bool requires_grad);
  static Ptr list(Items items);
  static Ptr tuple(Items items);
  /// A dict, in insertion order. Keys: str, int, bool, float, None or tuples
  /// of those (what weights_only loading can hash); the planner checks.
  static Ptr dict(Entries entries);
  /// collections.OrderedDict; `attributes` is its __dict__ as a kDict with
  /// string keys (module.state_dict()'s {"_metadata": ...}), or null.
  static Ptr ordered_dict(Entries entries, Ptr attributes = nullptr);

  Kind kind() const noexcept { return kind_; }
  bool is(Kind kind) const noexcept { return kind_ == kind; }
  /// The Python type's name: "int", "str", "collections.OrderedDict", ...
  const char* type_name() const noexcept;

  bool as_bool() const;
  std::int64_t as_int() const;
  /// kBigInt: the minimal little-endian two's-complement bytes.
  const std::string& big_integer_bytes() const;
  double as_float() const;
  const std::string& as_string() const;
  /// kTensor, kParameter.
  const at::Tensor& as_tensor() const;
  /// kList, kTuple.
  const Items& items() const;
  /// kDict, kOrderedDict.
  const Entries& entries() const;
  /// kOrderedDict: its attributes, or null.
  const Ptr& attributes() const;
  /// kDict, kOrderedDict: the value under string key `key`, or null.
  Ptr get(std::string_view key) const;

 private:
  explicit Value(Kind kind) : kind_(kind) {}
  void expect(Kind kind) const;

  Kind kind_;
  bool boolean_ = false;
  std::int64_t integer_ = 0;
  double floating_ = 0;
  std::string text_;
  at::Tensor tensor_;
  Items items_;
  Entries entries_;
  Ptr attributes_;
};

/// The Value of a state dict. Tensors, lists, dicts and tuples reached twice
/// through the same object (TensorImpl, list, dict or tuple) become one Value,
/// so they are pickled once, as torch.save pickles one Python object. Dict
/// keys may be str, int, bool or float (an optimizer's `state` is int-keyed).
/// Throws ckptw::FormatError naming the key path for a value torch.load's
/// weights-only mode would refuse (objects, enums, futures, ...).
CKPTW_EXPORT Value::Ptr to_value(const StateDict& state_dict);
CKPTW_EXPORT Value::Ptr to_value(const c10::IValue& value);

/// The IValue of a Value, as faithfully as IValue allows: an OrderedDict
/// becomes a plain dict (its attributes are dropped), a Parameter a tensor
/// with its requires_grad, identity becomes
/// sharing where IValue shares (tensors, lists, dicts). Dict keys must all be
/// of one type (str, int, bool or float), and an int wider than 64 bits has no
/// IValue: either is a ckptw::FormatError naming the key path.
CKPTW_EXPORT c10::IValue to_ivalue(const Value::Ptr& value);

}  // namespace ckptw
