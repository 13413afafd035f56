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
// places). Equal but distinct Values stay distinct, strings included (two
// equal str objects are pickled twice), except the few literals torch writes
// itself ("cpu", "storage", "latin1"), which CPython interns: those are shared
// by text. A Value is immutable once made; cycles cannot be built.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include "ckptw/export.hpp"
#include "ckptw/payload_source.hpp"
#include "ckptw/types.hpp"

namespace ckptw {

class CKPTW_EXPORT Value {
 public:
  enum class Kind {
    kNone, kBool, kInt, kBigInt, kFloat, kComplex, kString, kBytes, kByteArray,
    kTensor, kParameter, kList, kTuple, kSet, kDict, kOrderedDict, kCounter, kSize, kDtype, kDevice
  };
  using Ptr = std::shared_ptr<const Value>;
  using Items = std::vector<Ptr>;
  using Entries = std::vector<std::pair<Ptr, Ptr>>;

  /// How deep containers may nest. The planner (and the Python binding's
  /// conversion, before it) refuse deeper ones, as the reader
  /// refuses deeper pickles, so that no walk over a value exhausts the stack.
  static constexpr std::size_t kMaxDepth = 1000;

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
  static Ptr complex_number(double real, double imag);
  static Ptr string(std::string value);
  /// bytes / bytearray: raw bytes. torch.load(weights_only=True) refuses an
  /// empty bytes (pickled through the `bytes` global), so the planner does.
  static Ptr bytes(std::string value);
  static Ptr bytearray(std::string value);
  /// A tensor, its lazy conjugate/negative bits (t.conj(), torch._neg_view)
  /// kept as torch.save keeps them. `attributes`: the Python attributes set on
  /// it (`t.foo = ...`, its __dict__) as a kDict with string keys, or null;
  /// torch.save pickles a tensor with attributes through
  /// torch._tensor._rebuild_from_type_v2, which restores them.
  static Ptr tensor(at::Tensor value, Ptr attributes = nullptr);
  /// torch.nn.Parameter (state_dict(keep_vars=True)): `data` and whether the
  /// parameter requires grad; as_tensor() gives `data` with that flag set.
  /// `attributes` as for tensor() (then _rebuild_parameter_with_state).
  static Ptr parameter(at::Tensor data, bool requires_grad, Ptr attributes = nullptr);
  /// A CPU tensor whose storage bytes `source` produces while the file is
  /// written. `layout` (a meta tensor: torch.empty(size, dtype=...,
  /// device="meta"), or a view of one) gives the dtype, size, stride, storage
  /// offset and storage size; it is pickled as a "cpu" tensor, as torch.save
  /// pickles the same tensor holding the bytes. Saved by
  /// CheckpointWriter::save, write and save_segments through the ring;
  /// write_async, which must capture its bytes at the call, refuses it.
  static Ptr streamed_tensor(at::Tensor layout, std::shared_ptr<PayloadSource> source);
  static Ptr list(Items items);
  static Ptr tuple(Items items);
  /// A set, its items in iteration order (frozenset is outside weights_only).
  static Ptr set(Items items);
  /// collections.Counter.
  static Ptr counter(Entries entries);
  /// torch.Size, torch.dtype (a torch name: "float32", "bfloat16"),
  /// torch.device (type "cpu", "cuda", ...; index -1: none).
  static Ptr size(std::vector<std::int64_t> dims);
  static Ptr dtype(std::string torch_name);
  static Ptr device(std::string type, std::int64_t index = -1);
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
  /// kComplex: {real, imag}.
  std::pair<double, double> as_complex() const;
  /// kBytes, kByteArray.
  const std::string& as_bytes() const;
  /// kSize.
  const std::vector<std::int64_t>& as_size() const;
  /// kDtype: the torch name.
  const std::string& dtype_name() const;
  /// kDevice: type and index (-1: none).
  const std::string& device_type() const;
  std::int64_t device_index() const;
  const std::string& as_string() const;
  /// kTensor, kParameter.
  const at::Tensor& as_tensor() const;
  /// kTensor: the source of a streamed_tensor() (as_tensor() is then its
  /// layout), else null.
  const std::shared_ptr<PayloadSource>& payload_source() const;
  /// kList, kTuple, kSet.
  const Items& items() const;
  /// kDict, kOrderedDict, kCounter.
  const Entries& entries() const;
  /// kOrderedDict, kTensor, kParameter: its attributes (a kDict), or null.
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
  double imag_ = 0;
  std::vector<std::int64_t> dims_;
  std::string text_;
  at::Tensor tensor_;
  std::shared_ptr<PayloadSource> source_;
  Items items_;
  Entries entries_;
  Ptr attributes_;
};

/// The Value of a state dict. Tensors, lists, dicts and tuples reached twice
/// through the same object (TensorImpl, list, dict or tuple) become one Value,
/// so they are pickled once, as torch.save pickles one Python object; equal
/// strings become one Value (C++ strings have no identity; a Python script's
/// equal literals are one interned object). Dict
/// keys may be str, int, bool or float (an optimizer's `state` is int-keyed).
/// Throws ckptw::FormatError naming the key path for a value torch.load's
/// weights-only mode would refuse (objects, enums, futures, ...).
CKPTW_EXPORT Value::Ptr to_value(const StateDict& state_dict);
CKPTW_EXPORT Value::Ptr to_value(const c10::IValue& value);

/// The IValue of a Value, as faithfully as IValue allows: an OrderedDict
/// becomes a plain dict and a tensor stays a tensor (the attributes of either
/// are dropped), a Parameter a tensor with its requires_grad, a streamed tensor its meta layout, identity becomes
/// sharing where IValue shares (tensors, lists, dicts); a set becomes a list,
/// a Counter a dict, a torch.Size an int list, bytes a string of those bytes,
/// a dtype its ScalarType, a device a Device, a complex a complex. Dict keys must all be
/// of one type (str, int, bool or float), and an int wider than 64 bits has no
/// IValue: either is a ckptw::FormatError naming the key path.
CKPTW_EXPORT c10::IValue to_ivalue(const Value::Ptr& value);

}  // namespace ckptw
