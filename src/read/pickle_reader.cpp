#include "read/pickle_reader.hpp"

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "ckptw/error.hpp"
#include "format/dtype_table.hpp"
#include "util/byte_order.hpp"

namespace ckptw::detail {
namespace {

constexpr std::size_t kMaxDepth = kMaxPickleDepth;
constexpr std::size_t kMaxDims = 64;       // tensor rank

using Kind = PickleValue::Kind;


class Machine {
 public:
  Machine(std::string_view bytes, const std::string& path, PickleTree& tree) : in_(bytes), path_(path), tree_(tree) {}

  PickleValuePtr make(Kind kind) {
    PickleValue& v = tree_.arena.emplace_back();
    v.kind = kind;
    return &v;
  }

  PickleValuePtr run() {
    while (true) {
      const std::size_t at = pos_;
      const auto opcode = static_cast<unsigned char>(take(1)[0]);
      switch (opcode) {
        case 0x80: {  // PROTO
          unsigned char proto = static_cast<unsigned char>(take(1)[0]);
          if (proto > 5) fail_at(at, "unsupported pickle protocol " + std::to_string(proto));
          break;
        }
        case '.':  // STOP
          if (stack_.size() != 1 || !marks_.empty()) fail_at(at, "STOP with a malformed stack");
          if (pos_ != in_.size()) fail_at(at, "trailing bytes after STOP");
          return stack_.back();
        case 'N': push(make(Kind::kNone)); break;
        case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
          auto v = make(Kind::kBool);
          v->boolean = opcode == 0x88;
          push(v);
          break;
        }
        case 'K': push_int(static_cast<unsigned char>(take(1)[0])); break;
        case 'M': push_int(static_cast<std::int64_t>(le(take(2), 2))); break;
        case 'J': push_int(static_cast<std::int32_t>(le(take(4), 4))); break;
        case 0x8a: {  // LONG1
          std::size_t n = static_cast<unsigned char>(take(1)[0]);
          std::string_view bytes = take(n);
          if (n > 8) {  // torch.initial_seed() can be 2^64 - 1
            auto v = make(Kind::kBigInt);
            v->text = std::string(bytes);
            push(v);
            break;
          }
          std::uint64_t bits = n ? le(bytes, n) : 0;
          if (n > 0 && n < 8 && (static_cast<unsigned char>(bytes[n - 1]) & 0x80)) bits |= ~0ull << (8 * n);
          push_int(static_cast<std::int64_t>(bits));
          break;
        }
        case 'G': {  // BINFLOAT, big-endian
          std::string_view b = take(8);
          std::uint64_t bits = 0;
          for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<unsigned char>(b[i]);
          auto v = make(Kind::kFloat);
          std::memcpy(&v->floating, &bits, sizeof bits);
          push(v);
          break;
        }
        case 'X': {  // BINUNICODE
          std::size_t n = le(take(4), 4);
          auto v = make(Kind::kString);
          v->text = std::string(take(n));
          push(v);
          break;
        }
        case 'U': {  // SHORT_BINSTRING
          std::size_t n = static_cast<unsigned char>(take(1)[0]);
          auto v = make(Kind::kString);
          v->text = std::string(take(n));
          push(v);
          break;
        }
        case 'c': global(at); break;
        case '(': marks_.push_back(stack_.size()); break;
        case ')': push(make(Kind::kTuple)); break;
        case 't': push(sequence(at, Kind::kTuple, pop_mark(at))); break;
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          std::size_t n = opcode - 0x84;
          push(sequence(at, Kind::kTuple, pop_n(at, n)));
          break;
        }
        case ']': push(make(Kind::kList)); break;
        case '}': push(make(Kind::kDict)); break;
        case 'a': {  // APPEND
          auto item = pop(at);
          auto list = target(at, Kind::kList);
          adopt(at, *list, item);
          list->items.push_back(item);
          break;
        }
        case 'e': {  // APPENDS
          auto items = pop_mark(at);
          auto list = target(at, Kind::kList);
          for (const auto& item : items) adopt(at, *list, item);
          list->items.insert(list->items.end(), items.begin(), items.end());
          break;
        }
        case 's': {  // SETITEM
          auto value = pop(at);
          auto key = pop(at);
          auto dict = target(at, Kind::kDict);
          adopt(at, *dict, value);
          dict->entries.emplace_back(key, value);
          break;
        }
        case 'u': {  // SETITEMS
          auto items = pop_mark(at);
          if (items.size() % 2) fail_at(at, "SETITEMS with an odd number of items");
          auto dict = target(at, Kind::kDict);
          for (std::size_t i = 0; i < items.size(); i += 2) {
            adopt(at, *dict, items[i + 1]);
            dict->entries.emplace_back(items[i], items[i + 1]);
          }
          break;
        }
        case 'Q': push(persistent_load(at, pop(at))); break;
        case 'R': {  // REDUCE
          auto args = pop(at);
          auto callable = pop(at);
          push(reduce(at, callable, args));
          break;
        }
        case 'b': {  // BUILD: only an OrderedDict's __dict__ (nn.Module's _metadata)
          PickleValuePtr state = pop(at);
          if (stack_.empty() || stack_.back()->kind != Kind::kDict || !stack_.back()->ordered) {
            fail_at(at, "BUILD on something other than an OrderedDict");
          }
          if (state->kind != Kind::kDict || state->ordered) fail_at(at, "BUILD with a state that is not a dict");
          for (const auto& entry : state->entries) {
            if (entry.first->kind != Kind::kString) fail_at(at, "BUILD with an attribute name that is not a str");
          }
          if (stack_.back()->attributes != nullptr) fail_at(at, "a second BUILD on one OrderedDict");
          stack_.back()->attributes = state;
          break;
        }
        case 'q': memo_put(at, static_cast<unsigned char>(take(1)[0])); break;
        case 'r': memo_put(at, le(take(4), 4)); break;
        case 'h': memo_get(at, static_cast<unsigned char>(take(1)[0])); break;
        case 'j': memo_get(at, le(take(4), 4)); break;
        default:
          fail_at(at, "unsupported pickle opcode 0x" + hex(opcode));
      }
    }
  }

 private:
  [[noreturn]] void fail_at(std::size_t at, const std::string& what) const {
    throw UnpicklingError("data.pkl offset " + std::to_string(at) + ": " + what, path_);
  }
  static std::string hex(unsigned v) {
    const char* digits = "0123456789abcdef";
    return std::string{digits[(v >> 4) & 0xF], digits[v & 0xF]};
  }
  static std::uint64_t le(std::string_view b, std::size_t n) {
    return get_le(reinterpret_cast<const unsigned char*>(b.data()), static_cast<int>(n));
  }

  std::string_view take(std::size_t n) {
    if (n > in_.size() - pos_) fail_at(pos_, "truncated pickle");
    std::string_view out = in_.substr(pos_, n);
    pos_ += n;
    return out;
  }

  void push(PickleValuePtr v) { stack_.push_back(std::move(v)); }
  void push_int(std::int64_t value) {
    auto v = make(Kind::kInt);
    v->integer = value;
    push(v);
  }
  PickleValuePtr pop(std::size_t at) {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail_at(at, "stack underflow");
    PickleValuePtr v = stack_.back();
    stack_.pop_back();
    return v;
  }
  std::vector<PickleValuePtr> pop_n(std::size_t at, std::size_t n) {
    std::size_t floor = marks_.empty() ? 0 : marks_.back();
    if (stack_.size() < floor + n) fail_at(at, "stack underflow");
    std::vector<PickleValuePtr> items(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
    stack_.resize(stack_.size() - n);
    return items;
  }
  std::vector<PickleValuePtr> pop_mark(std::size_t at) {
    if (marks_.empty()) fail_at(at, "no MARK on the stack");
    std::size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<PickleValuePtr> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }
  PickleValuePtr target(std::size_t at, Kind kind) {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back()) || stack_.back()->kind != kind) {
      fail_at(at, kind == Kind::kList ? "APPEND to a non-list" : "SETITEM on a non-dict");
    }
    return stack_.back();
  }
  // Bounds nesting so that walking or destroying the tree cannot exhaust the stack.
  void adopt(std::size_t at, PickleValue& parent, const PickleValuePtr& child) {
    parent.depth = std::max(parent.depth, child->depth + 1);
    if (parent.depth > kMaxDepth) fail_at(at, "containers nested deeper than " + std::to_string(kMaxDepth));
  }

  PickleValuePtr sequence(std::size_t at, Kind kind, std::vector<PickleValuePtr> items) {
    auto v = make(kind);
    for (const auto& item : items) adopt(at, *v, item);
    v->items = std::move(items);
    return v;
  }

  void memo_put(std::size_t at, std::uint64_t id) {
    if (stack_.empty()) fail_at(at, "memo put on an empty stack");
    // Memo ids are never larger than the number of objects, which is bounded by the pickle size.
    if (memo_.size() > in_.size()) fail_at(at, "memo larger than the pickle");
    memo_[id] = stack_.back();
  }
  void memo_get(std::size_t at, std::uint64_t id) {
    auto it = memo_.find(id);
    if (it == memo_.end()) fail_at(at, "memo id " + std::to_string(id) + " was never stored");
    push(it->second);
  }

  void global(std::size_t at) {
    auto line = [&]() {
      std::size_t end = in_.find('\n', pos_);
      if (end == std::string_view::npos) fail_at(at, "unterminated GLOBAL");
      std::string text(in_.substr(pos_, end - pos_));
      pos_ = end + 1;
      return text;
    };
    std::string module = line();
    std::string name = line();
    const bool allowed =
        (module == "collections" && name == "OrderedDict") ||
        (module == "torch._utils" && (name == "_rebuild_tensor_v2" || name == "_rebuild_tensor_v3" ||
                                      name == "_rebuild_parameter" || name == "_rebuild_parameter_with_state")) ||
        (module == "torch._tensor" && name == "_rebuild_from_type_v2") ||
        (module == "torch" && name == "Tensor") ||
        (module == "torch.storage" && name == "UntypedStorage") ||
        (module == "torch" && (name == "Size" || name == "device")) ||
        ((module == "__builtin__" || module == "builtins") && (name == "set" || name == "complex" || name == "bytearray")) ||
        (module == "_codecs" && name == "encode") || (module == "collections" && name == "Counter") ||
        (module == "torch" && (dtype_by_legacy_storage(name) || dtype_by_torch_name(name)));
    if (!allowed) fail_at(at, "global '" + module + "." + name + "' is not allowed in a weights-only state dict");
    auto v = make(Kind::kGlobal);
    v->text = module + "." + name;
    push(v);
  }

  const std::int64_t& int_item(std::size_t at, const PickleValuePtr& v, const char* what) {
    if (!v || v->kind != Kind::kInt) fail_at(at, std::string(what) + " is not an int");
    return v->integer;
  }

  PickleValuePtr persistent_load(std::size_t at, const PickleValuePtr& pid) {
    if (pid->kind != Kind::kTuple || pid->items.size() != 5 || pid->items[0]->kind != Kind::kString ||
        pid->items[0]->text != "storage") {
      fail_at(at, "persistent id is not ('storage', type, key, location, numel)");
    }
    const auto& type = pid->items[1];
    const auto& key = pid->items[2];
    const auto& location = pid->items[3];
    if (type->kind != Kind::kGlobal || key->kind != Kind::kString || location->kind != Kind::kString) {
      fail_at(at, "malformed storage persistent id");
    }
    std::int64_t numel = int_item(at, pid->items[4], "storage numel");
    if (numel < 0) fail_at(at, "negative storage size");
    auto v = make(Kind::kStorage);
    PickledTensor& s = v->tensor;
    s.storage_key = key->text;
    s.location = location->text;
    if (type->text == "torch.storage.UntypedStorage") {
      s.element_size = 1;
      s.dtype = "uint8";
      s.untyped_storage = true;
    } else {
      const DtypeInfo* dtype = dtype_by_legacy_storage(type->text.substr(std::strlen("torch.")));
      if (dtype == nullptr) fail_at(at, "'" + type->text + "' is not a storage type");
      s.dtype = std::string(dtype->torch_name);
      s.element_size = dtype->element_size;
    }
    const bool complex = s.dtype.rfind("complex", 0) == 0;
    s.swap_unit = complex ? s.element_size / 2 : s.element_size;
    if (__builtin_mul_overflow(static_cast<std::uint64_t>(numel), s.element_size, &s.storage_nbytes)) {
      fail_at(at, "storage size overflows");
    }
    return v;
  }

  std::vector<std::int64_t> int_tuple(std::size_t at, const PickleValuePtr& v, const char* what) {
    if (v->kind != Kind::kTuple) fail_at(at, std::string(what) + " is not a tuple");
    if (v->items.size() > kMaxDims) fail_at(at, std::string(what) + " has too many dimensions");
    std::vector<std::int64_t> out;
    for (const auto& item : v->items) out.push_back(int_item(at, item, what));
    return out;
  }

  PickleValuePtr reduce(std::size_t at, const PickleValuePtr& callable, const PickleValuePtr& args) {
    if (callable->kind != Kind::kGlobal || args->kind != Kind::kTuple) fail_at(at, "REDUCE of a non-global");
    const std::string& fn = callable->text;
    const auto& a = args->items;
    if (fn == "collections.OrderedDict") {
      if (!a.empty()) fail_at(at, "OrderedDict with constructor arguments");
      PickleValuePtr dict = make(Kind::kDict);
      dict->ordered = true;
      return dict;
    }
    if (PickleValuePtr object = reduced_object(at, fn, a)) return object;
    if (fn == "torch._tensor._rebuild_from_type_v2") {
      // (func, new_type, args, state): func(*args), then its attributes.
      if (a.size() != 4 || a[0]->kind != Kind::kGlobal || a[1]->kind != Kind::kGlobal) {
        fail_at(at, "malformed " + fn + " arguments");
      }
      if (a[1]->text != "torch.Tensor") {
        fail_at(at, fn + " of type '" + a[1]->text + "': ckptw reads plain tensors only (tensor subclasses are "
                    "outside torch's default weights-only set)");
      }
      if (a[0]->text != "torch._utils._rebuild_tensor_v2" && a[0]->text != "torch._utils._rebuild_tensor_v3") {
        fail_at(at, fn + " of '" + a[0]->text + "' is not supported");
      }
      PickleValuePtr v = reduce(at, a[0], a[2]);
      v->attributes = object_state(at, a[3]);
      return v;
    }
    const bool with_state = fn == "torch._utils._rebuild_parameter_with_state";
    if (with_state || fn == "torch._utils._rebuild_parameter") {
      // (data, requires_grad, backward_hooks[, state]): Parameter(data, requires_grad).
      if (a.size() != (with_state ? 4u : 3u) || a[0]->kind != Kind::kTensor || a[1]->kind != Kind::kBool) {
        fail_at(at, "malformed " + fn + " arguments");
      }
      check_backward_hooks(at, a[2]);
      PickleValuePtr v = &tree_.arena.emplace_back(*a[0]);
      v->tensor.requires_grad = a[1]->boolean;
      v->tensor.parameter = true;
      v->attributes = with_state ? object_state(at, a[3]) : nullptr;  // Parameter(data) has none of data's
      return v;
    }
    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    // _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype[, metadata])
    const bool v3 = fn == "torch._utils._rebuild_tensor_v3";
    if (!v3 && fn != "torch._utils._rebuild_tensor_v2") fail_at(at, "REDUCE of '" + fn + "' is not allowed");
    const std::size_t arity = v3 ? 7 : 6;
    if (a.size() < arity || a.size() > arity + 1 || a[0]->kind != Kind::kStorage || a[4]->kind != Kind::kBool) {
      fail_at(at, "malformed " + fn + " arguments");
    }
    auto v = make(Kind::kTensor);
    PickledTensor& t = v->tensor;
    t = a[0]->tensor;
    if (v3) {
      if (a[6]->kind != Kind::kGlobal) fail_at(at, "_rebuild_tensor_v3 dtype is not a global");
      const DtypeInfo* dtype = dtype_by_torch_name(a[6]->text.substr(std::strlen("torch.")));
      if (dtype == nullptr) fail_at(at, "'" + a[6]->text + "' is not a dtype");
      t.dtype = std::string(dtype->torch_name);
      t.element_size = dtype->element_size;
      if (t.storage_nbytes % t.element_size) fail_at(at, "storage is not a whole number of " + t.dtype + " elements");
    }
    t.storage_offset = int_item(at, a[1], "storage offset");
    t.sizes = int_tuple(at, a[2], "size");
    t.strides = int_tuple(at, a[3], "stride");
    t.requires_grad = a[4]->boolean;
    check_backward_hooks(at, a[5]);
    if (a.size() > arity) apply_metadata(at, a[arity], t);
    check_extent(at, t);
    return v;
  }

  // torch sets `_backward_hooks` to this argument; torch.save always writes an
  // empty OrderedDict (hooks are not serialized), and a hook could only be
  // code, which weights-only loading refuses. Anything else is refused here
  // rather than dropped.
  void check_backward_hooks(std::size_t at, const PickleValuePtr& hooks) {
    if (hooks->kind != Kind::kDict || !hooks->ordered || !hooks->entries.empty() || hooks->attributes != nullptr) {
      fail_at(at, "backward_hooks is not an empty OrderedDict (ckptw does not restore backward hooks)");
    }
  }

  // The metadata dict of _rebuild_tensor_v2/_v3 (torch._utils.set_tensor_metadata):
  // the lazy 'neg' and 'conj' bits, as torch.save writes them ({'neg': True,
  // 'conj': True}, keys of set bits only). None or {} sets nothing. Any other
  // key is refused (torch ignores it), and so is a value other than True:
  // torch sets the bit for a False value too.
  void apply_metadata(std::size_t at, const PickleValuePtr& metadata, PickledTensor& t) {
    if (metadata->kind == Kind::kNone) return;
    if (metadata->kind != Kind::kDict || metadata->ordered) fail_at(at, "tensor metadata is not a dict");
    for (const auto& [key, value] : metadata->entries) {
      if (key->kind != Kind::kString || value->kind != Kind::kBool || !value->boolean) {
        fail_at(at, "tensor metadata entries must be 'neg': True or 'conj': True (torch.load sets the bit for "
                    "any value)");
      }
      if (key->text == "neg") {
        t.neg = true;
      } else if (key->text == "conj") {
        t.conj = true;
      } else {
        fail_at(at, "tensor metadata '" + key->text + "' is not known to ckptw (it knows 'neg' and 'conj')");
      }
    }
  }

  // The state torch._utils._set_obj_state applies: None, a dict, or a pair
  // (dict or None, slots dict or None), each entry an attribute set with
  // setattr, dict first. Returns one dict of them all, or null when empty.
  PickleValuePtr object_state(std::size_t at, const PickleValuePtr& state) {
    std::vector<PickleValuePtr> parts;
    if (state->kind == Kind::kTuple && state->items.size() == 2) {
      parts = state->items;
    } else {
      parts.push_back(state);
    }
    auto merged = make(Kind::kDict);
    for (const auto& part : parts) {
      if (part->kind == Kind::kNone) continue;
      if (part->kind != Kind::kDict || part->ordered) fail_at(at, "a tensor's state is not a dict");
      for (const auto& [key, value] : part->entries) {
        if (key->kind != Kind::kString) fail_at(at, "a tensor attribute's name is not a str");
        adopt(at, *merged, value);
        merged->entries.emplace_back(key, value);
      }
    }
    return merged->entries.empty() ? nullptr : merged;
  }

  // The objects of torch's weights-only set that a REDUCE builds, their
  // arguments checked; nullptr for another callable.
  PickleValuePtr reduced_object(std::size_t at, const std::string& fn, const std::vector<PickleValuePtr>& a) {
    auto is = [&](std::size_t i, Kind kind) { return a.size() > i && a[i]->kind == kind; };
    bool ok;
    if (fn == "torch.Size") {
      ok = a.size() == 1 && is(0, Kind::kTuple);
      if (ok) (void)int_tuple(at, a[0], "torch.Size");
    } else if (fn == "torch.device") {
      ok = (a.size() == 1 || a.size() == 2) && is(0, Kind::kString) && (a.size() == 1 || a[1]->kind == Kind::kInt);
    } else if (fn == "__builtin__.set" || fn == "builtins.set") {
      ok = a.size() == 1 && is(0, Kind::kList);
    } else if (fn == "__builtin__.complex" || fn == "builtins.complex") {
      ok = a.size() == 2 && is(0, Kind::kFloat) && is(1, Kind::kFloat);
    } else if (fn == "_codecs.encode") {  // bytes, as protocol 2 pickles them
      ok = a.size() == 2 && is(0, Kind::kString) && is(1, Kind::kString) && a[1]->text == "latin1";
    } else if (fn == "__builtin__.bytearray" || fn == "builtins.bytearray") {
      ok = a.size() == 1 && is(0, Kind::kReduced) && a[0]->text == "_codecs.encode";
    } else if (fn == "collections.Counter") {
      ok = a.size() == 1 && is(0, Kind::kDict) && !a[0]->ordered;
    } else {
      return nullptr;
    }
    if (!ok) fail_at(at, "malformed " + fn + " arguments");
    PickleValuePtr v = sequence(at, Kind::kReduced, a);
    v->text = fn.rfind("builtins.", 0) == 0 ? "__builtin__." + fn.substr(std::strlen("builtins.")) : fn;
    return v;
  }

  // The view must fit its storage: offset + sum((size_i - 1) * stride_i) < numel.
  void check_extent(std::size_t at, const PickledTensor& t) {
    if (t.sizes.size() != t.strides.size()) fail_at(at, "size and stride differ in rank");
    if (t.storage_offset < 0) fail_at(at, "negative storage offset");
    std::uint64_t numel = t.storage_nbytes / t.element_size;
    std::uint64_t last = static_cast<std::uint64_t>(t.storage_offset);
    for (std::size_t i = 0; i < t.sizes.size(); ++i) {
      if (t.sizes[i] < 0 || t.strides[i] < 0) fail_at(at, "negative size or stride");
      if (t.sizes[i] == 0) return;  // empty tensor: touches no element
      std::uint64_t span;
      if (__builtin_mul_overflow(static_cast<std::uint64_t>(t.sizes[i] - 1), static_cast<std::uint64_t>(t.strides[i]), &span) ||
          __builtin_add_overflow(last, span, &last)) {
        fail_at(at, "tensor extent overflows");
      }
    }
    if (last >= numel) fail_at(at, "tensor view reaches past its storage of " + std::to_string(numel) + " elements");
  }

  std::string_view in_;
  const std::string& path_;
  PickleTree& tree_;
  std::size_t pos_ = 0;
  std::vector<PickleValuePtr> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, PickleValuePtr> memo_;
};

}  // namespace

std::unique_ptr<PickleTree> read_pickle(std::string_view bytes, const std::string& path) {
  auto tree = std::make_unique<PickleTree>();
  tree->root = Machine(bytes, path, *tree).run();
  return tree;
}

}  // namespace ckptw::detail
