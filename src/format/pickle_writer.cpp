#include "format/pickle_writer.hpp"

#include <cstring>
#include <stdexcept>

#include "util/byte_order.hpp"

namespace ckptw::detail {
namespace {

// Opcodes of protocol <= 2 (pickletools names).
constexpr char kProto = '\x80';
constexpr char kStop = '.';
constexpr char kNone = 'N';
constexpr char kNewTrue = '\x88';
constexpr char kNewFalse = '\x89';
constexpr char kBinInt = 'J';
constexpr char kBinInt1 = 'K';
constexpr char kBinInt2 = 'M';
constexpr char kLong1 = '\x8a';
constexpr char kBinFloat = 'G';
constexpr char kBinUnicode = 'X';
constexpr char kGlobal = 'c';
constexpr char kMark = '(';
constexpr char kEmptyTuple = ')';
constexpr char kTuple = 't';
constexpr char kTuple1 = '\x85';
constexpr char kEmptyDict = '}';
constexpr char kSetItem = 's';
constexpr char kSetItems = 'u';
constexpr char kEmptyList = ']';
constexpr char kAppend = 'a';
constexpr char kAppends = 'e';
constexpr char kReduce = 'R';
constexpr char kBuild = 'b';
constexpr char kBinPersId = 'Q';
constexpr char kBinPut = 'q';
constexpr char kLongBinPut = 'r';
constexpr char kBinGet = 'h';
constexpr char kLongBinGet = 'j';
constexpr std::size_t kBatchSize = 1000;  // CPython's pickle._BATCHSIZE

}  // namespace

PickleWriter::PickleWriter() {
  op(kProto);
  out_.push_back('\x02');
}

std::uint32_t PickleWriter::memo_put() {
  const std::uint32_t id = next_memo_id_++;
  if (id < 256) {
    op(kBinPut);
    out_.push_back(static_cast<char>(id));
  } else {
    op(kLongBinPut);
    put_u32(out_, id);
  }
  return id;
}

void PickleWriter::memo_get(std::uint32_t id) {
  if (id < 256) {
    op(kBinGet);
    out_.push_back(static_cast<char>(id));
  } else {
    op(kLongBinGet);
    put_u32(out_, id);
  }
}

void PickleWriter::none() { op(kNone); }

void PickleWriter::boolean(bool value) { op(value ? kNewTrue : kNewFalse); }

void PickleWriter::integer(std::int64_t value) {
  if (value >= 0 && value <= 0xFF) {
    op(kBinInt1);
    out_.push_back(static_cast<char>(value));
  } else if (value >= 0 && value <= 0xFFFF) {
    op(kBinInt2);
    put_u16(out_, static_cast<std::uint16_t>(value));
  } else if (value >= INT32_MIN && value <= INT32_MAX) {
    op(kBinInt);
    put_u32(out_, static_cast<std::uint32_t>(static_cast<std::int32_t>(value)));
  } else {
    // LONG1 with CPython's minimal two's-complement length (encode_long).
    unsigned char bytes[8];
    std::uint64_t bits = static_cast<std::uint64_t>(value);
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<unsigned char>(bits >> (8 * i));
    int n = 8;
    while (n > 1) {
      unsigned char top = bytes[n - 1], next = bytes[n - 2];
      bool redundant = (top == 0x00 && !(next & 0x80)) || (top == 0xFF && (next & 0x80));
      if (!redundant) break;
      --n;
    }
    long_integer(std::string_view(reinterpret_cast<const char*>(bytes), n));
  }
}

void PickleWriter::long_integer(std::string_view bytes) {
  if (bytes.size() > kMaxLongBytes) throw std::logic_error("ckptw: LONG1 holds at most 255 bytes");
  op(kLong1);
  out_.push_back(static_cast<char>(bytes.size()));
  out_.append(bytes);
}

void PickleWriter::floating(double value) {
  op(kBinFloat);  // 8 bytes, big-endian IEEE 754
  std::uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  for (int i = 7; i >= 0; --i) out_.push_back(static_cast<char>((bits >> (8 * i)) & 0xFF));
}

std::uint32_t PickleWriter::fresh_string(std::string_view value) {
  op(kBinUnicode);
  put_u32(out_, static_cast<std::uint32_t>(value.size()));
  out_.append(value);
  return memo_put();
}

bool PickleWriter::is_interned_literal(std::string_view value) {
  return value == "storage" || value == "cpu" || value == "latin1";
}

void PickleWriter::string(std::string_view value) {
  if (auto it = string_memo_.find(value); it != string_memo_.end()) {
    memo_get(it->second);
    return;
  }
  string_memo_.emplace(std::string(value), next_memo_id_);
  (void)fresh_string(value);
}

void PickleWriter::global(std::string_view module, std::string_view name) {
  global_key_.assign(module);
  global_key_ += '\n';
  global_key_ += name;
  if (auto it = global_memo_.find(global_key_); it != global_memo_.end()) {
    memo_get(it->second);
    return;
  }
  global_memo_.emplace(global_key_, next_memo_id_);
  op(kGlobal);
  out_ += global_key_;
  out_.push_back('\n');
  memo_put();
}

void PickleWriter::int_tuple(const std::vector<std::int64_t>& values) {
  tuple(values.size(), [&](std::size_t i) { integer(values[i]); });
}

std::uint32_t PickleWriter::tuple(std::size_t size, const std::function<void(std::size_t)>& emit_item) {
  if (size == 0) {
    op(kEmptyTuple);
    return kNotMemoized;
  }
  if (size > 3) op(kMark);
  for (std::size_t i = 0; i < size; ++i) emit_item(i);
  op(size > 3 ? kTuple : static_cast<char>(kTuple1 + size - 1));
  return memo_put();
}

void PickleWriter::batched(std::size_t size, char single_op, char batch_op, Batching batching,
                           const std::function<void(std::size_t)>& emit_item) {
  // Mirrors CPython's _pickle.c. The exact versions give one item the single
  // opcode and otherwise write MARK ... batch_op per batch of 1000; the dict
  // loop runs until a batch comes out short, so a dict whose size is a
  // multiple of 1000 ends with an empty MARK SETITEMS, and the list loop
  // stops when done. The iterator versions decide per batch: a batch of one
  // item gets the single opcode, and nothing follows a full last batch.
  if (size == 0) return;
  std::size_t next = 0;
  if (batching == Batching::kIterator) {
    while (next < size) {
      if (size - next == 1) {
        emit_item(next++);
        op(single_op);
        return;
      }
      op(kMark);
      for (std::size_t n = 0; n < kBatchSize && next < size; ++n) emit_item(next++);
      op(batch_op);
    }
    return;
  }
  if (size == 1) {
    emit_item(0);
    op(single_op);
    return;
  }
  std::size_t this_batch = 0;
  do {
    op(kMark);
    this_batch = 0;
    while (next < size && this_batch < kBatchSize) {
      emit_item(next++);
      ++this_batch;
    }
    op(batch_op);
  } while (batching == Batching::kExactDict ? this_batch == kBatchSize : next < size);
}

std::uint32_t PickleWriter::dict(std::size_t size, const std::function<void(std::size_t)>& emit_item) {
  op(kEmptyDict);
  const std::uint32_t id = memo_put();
  batched(size, kSetItem, kSetItems, Batching::kExactDict, emit_item);
  return id;
}

std::uint32_t PickleWriter::list(std::size_t size, const std::function<void(std::size_t)>& emit_item) {
  op(kEmptyList);
  const std::uint32_t id = memo_put();
  batched(size, kAppend, kAppends, Batching::kExactList, emit_item);
  return id;
}

std::uint32_t PickleWriter::ordered_dict(std::size_t size, const std::function<void(std::size_t)>& emit_item,
                                         bool has_state, const std::function<void()>& emit_state) {
  global("collections", "OrderedDict");
  op(kEmptyTuple);
  op(kReduce);
  const std::uint32_t id = memo_put();
  batched(size, kSetItem, kSetItems, Batching::kIterator, emit_item);
  if (has_state) {
    emit_state();
    op(kBuild);
  }
  return id;
}

std::uint32_t PickleWriter::tensor(const TensorPickle& t) { return tensor(t, t.requires_grad); }

std::uint32_t PickleWriter::tensor(const TensorPickle& t, bool requires_grad) {
  rebuild_function(t);
  rebuild_arguments(t, requires_grad);
  op(kReduce);
  return memo_put();
}

std::uint32_t PickleWriter::tensor_with_state(const TensorPickle& t, const std::function<void()>& emit_state) {
  global("torch._tensor", "_rebuild_from_type_v2");
  op(kMark);
  rebuild_function(t);
  global("torch", "Tensor");
  rebuild_arguments(t, t.requires_grad);
  emit_state();
  op(kTuple);
  memo_put();
  op(kReduce);
  return memo_put();
}

void PickleWriter::rebuild_function(const TensorPickle& t) {
  global("torch._utils", t.legacy_storage_class.empty() ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2");
}

void PickleWriter::rebuild_arguments(const TensorPickle& t, bool requires_grad) {
  const bool v3 = t.legacy_storage_class.empty();
  op(kMark);  // argument tuple

  // Persistent id ('storage', storage class, key, location, numel).
  op(kMark);
  string("storage");
  if (v3) {
    global("torch.storage", "UntypedStorage");
  } else {
    global("torch", t.legacy_storage_class);
  }
  // torch.save creates each key string once per storage and reuses it.
  if (t.storage_index >= storage_key_memo_.size()) storage_key_memo_.resize(t.storage_index + 1, kNotMemoized);
  std::uint32_t& key_memo = storage_key_memo_[t.storage_index];
  if (key_memo != kNotMemoized) {
    memo_get(key_memo);
  } else {
    key_memo = fresh_string(std::to_string(t.storage_index));
  }
  // "cpu" is one interned literal in torch; device tags such as "cuda:0" are
  // built afresh for every storage, so CPython never memo-hits them.
  if (t.location == "cpu") {
    string(t.location);
  } else {
    (void)fresh_string(t.location);
  }
  integer(t.storage_numel);
  op(kTuple);
  memo_put();
  op(kBinPersId);

  integer(t.storage_offset);
  int_tuple(t.sizes);
  int_tuple(t.strides);
  boolean(requires_grad);
  (void)ordered_dict(0, nullptr, false, nullptr);  // backward_hooks
  if (v3) global("torch", t.v3_dtype);
  if (t.neg || t.conj) {
    // torch._C._get_tensor_metadata builds the dict and its keys afresh for
    // every tensor: never a memo hit.
    (void)dict(static_cast<std::size_t>(t.neg) + static_cast<std::size_t>(t.conj), [&](std::size_t i) {
      (void)fresh_string(i == 0 && t.neg ? "neg" : "conj");
      boolean(true);
    });
  }
  op(kTuple);
  memo_put();
}

std::uint32_t PickleWriter::reduce(std::string_view module, std::string_view name, std::size_t args,
                                   const std::function<void(std::size_t)>& emit_arg) {
  global(module, name);
  (void)tuple(args, emit_arg);
  op(kReduce);
  return memo_put();
}

std::uint32_t PickleWriter::parameter(const TensorPickle& t, const std::function<void()>& emit_state) {
  global("torch._utils", emit_state ? "_rebuild_parameter_with_state" : "_rebuild_parameter");
  if (emit_state) op(kMark);
  (void)tensor(t, /*requires_grad=*/false);
  boolean(t.requires_grad);
  (void)ordered_dict(0, nullptr, false, nullptr);  // backward_hooks
  if (emit_state) {
    emit_state();
    op(kTuple);
  } else {
    op(static_cast<char>(kTuple1 + 2));
  }
  memo_put();
  op(kReduce);
  return memo_put();
}

std::string PickleWriter::finish() {
  op(kStop);
  return std::move(out_);
}

}  // namespace ckptw::detail
