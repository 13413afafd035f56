// Pickle protocol 2 emitter for data.pkl, producing the bytes CPython's
// pickler produces for the same state dict (memo numbering included), and
// restricted to the opcodes every supported torch.load accepts in
// weights_only mode (shared spec §6.3; BINFLOAT only when a float is written).
//
// The emitter knows nothing about tensors' memory; the planner tells it what
// to write. Containers follow CPython: a dict or list is memoized when created
// and filled in batches of 1000 (SETITEM/APPEND for a batch of one); a
// non-empty tuple is memoized after it is built.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ckptw::detail {

/// What _rebuild_tensor_v2/_v3 needs to rebuild one tensor.
struct TensorPickle {
  /// Legacy storage class (`FloatStorage`) for _rebuild_tensor_v2; empty for
  /// dtypes that only _rebuild_tensor_v3 can express. Both names are static
  /// text (the dtype table's).
  std::string_view legacy_storage_class;
  /// dtype global name (`float8_e4m3fn`) for _rebuild_tensor_v3; empty for v2.
  std::string_view v3_dtype;
  std::size_t storage_index = 0;  ///< key of the storage record: data/<storage_index>
  std::string location;           ///< "cpu", "cuda:0", ...
  std::int64_t storage_numel = 0; ///< elements (v2) or bytes (v3) of the whole storage
  std::int64_t storage_offset = 0;
  std::vector<std::int64_t> sizes;
  std::vector<std::int64_t> strides;
  bool requires_grad = false;
  /// Lazy negative / conjugate bits: the metadata dict torch appends to the
  /// rebuild arguments ({'neg': True, 'conj': True}, in that order).
  bool neg = false;
  bool conj = false;
};

class PickleWriter {
 public:
  /// What a call returns for an object it did not memoize.
  static constexpr std::uint32_t kNotMemoized = UINT32_MAX;

  PickleWriter();

  void none();
  void boolean(bool value);
  void integer(std::int64_t value);
  /// An int of any width up to kMaxLongBytes: its minimal little-endian
  /// two's-complement bytes, as LONG1 (CPython takes LONG4 beyond, which
  /// torch's weights-only loader does not read).
  void long_integer(std::string_view bytes);
  static constexpr std::size_t kMaxLongBytes = 255;
  void floating(double value);
  /// A string memoized by its text: for the literals torch and pickle write
  /// themselves ("storage", "cpu", "latin1"), which CPython interns, so a
  /// caller's equal literal is the same object.
  void string(std::string_view value);
  /// Whether `value` is one of those literals.
  static bool is_interned_literal(std::string_view value);
  /// The container and tensor calls return the memo id of the object they
  /// wrote (kNotMemoized for an empty tuple), for memo_get() to fetch it again.
  std::uint32_t tensor(const TensorPickle& t);
  /// A tensor with Python attributes, as Tensor.__reduce_ex__ writes it:
  /// torch._tensor._rebuild_from_type_v2(rebuild function, torch.Tensor,
  /// rebuild arguments, state), `emit_state()` writing the state (its __dict__).
  std::uint32_t tensor_with_state(const TensorPickle& t, const std::function<void()>& emit_state);
  /// torch.nn.Parameter: _rebuild_parameter(data, t.requires_grad, OrderedDict()),
  /// `data` being `t` without requires_grad; with `emit_state` (not null),
  /// _rebuild_parameter_with_state(data, t.requires_grad, OrderedDict(), state).
  std::uint32_t parameter(const TensorPickle& t, const std::function<void()>& emit_state = nullptr);

  /// `emit_item(i)` writes key i then value i.
  std::uint32_t dict(std::size_t size, const std::function<void(std::size_t)>& emit_item);
  /// `emit_item(i)` writes element i.
  std::uint32_t list(std::size_t size, const std::function<void(std::size_t)>& emit_item);
  std::uint32_t tuple(std::size_t size, const std::function<void(std::size_t)>& emit_item);
  /// collections.OrderedDict as CPython reduces it: GLOBAL, EMPTY_TUPLE,
  /// REDUCE, the items (batched as an iterator's, not as a dict's), then,
  /// with `has_state`, `emit_state()` (its __dict__) and BUILD.
  std::uint32_t ordered_dict(std::size_t size, const std::function<void(std::size_t)>& emit_item, bool has_state,
                             const std::function<void()>& emit_state);
  /// Fetches an object written before (BINGET / LONG_BINGET).
  void memo_get(std::uint32_t id);
  /// `module.name(*args)` as save_reduce writes it: the (memoized) global,
  /// the argument tuple (`emit_arg(i)` writes argument i), REDUCE, memoized.
  std::uint32_t reduce(std::string_view module, std::string_view name, std::size_t args,
                       const std::function<void(std::size_t)>& emit_arg);
  /// The global itself, as a value (torch.float32).
  void global(std::string_view module, std::string_view name);
  /// A string object seen for the first time whatever its text (one Python
  /// builds afresh, as torch.device's type): BINUNICODE, memoized, never a
  /// memo fetch. Returns its memo id.
  std::uint32_t fresh_string(std::string_view value);

  /// Appends STOP and returns the pickle.
  std::string finish();

 private:
  void op(char opcode) { out_.push_back(opcode); }
  std::uint32_t memo_put();
  void int_tuple(const std::vector<std::int64_t>& values);
  std::uint32_t tensor(const TensorPickle& t, bool requires_grad);
  // The rebuild function's global, then its argument tuple (memoized).
  void rebuild_function(const TensorPickle& t);
  void rebuild_arguments(const TensorPickle& t, bool requires_grad);
  // How CPython batches a container's items: batch_list_exact, batch_dict_exact
  // (a dict), or batch_list / batch_dict (an iterator, as from __reduce__).
  enum class Batching { kExactList, kExactDict, kIterator };
  void batched(std::size_t size, char single_op, char batch_op, Batching batching,
               const std::function<void(std::size_t)>& emit_item);

  std::string out_;
  std::uint32_t next_memo_id_ = 0;
  std::map<std::string, std::uint32_t, std::less<>> string_memo_;
  std::map<std::string, std::uint32_t, std::less<>> global_memo_;
  std::string global_key_;  // reused: global() runs four times per tensor
  // Memo id of each storage's key string, by storage index (dense from 0),
  // kNotMemoized until its first tensor.
  std::vector<std::uint32_t> storage_key_memo_;
};

}  // namespace ckptw::detail
