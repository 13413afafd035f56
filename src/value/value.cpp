#include "ckptw/value.hpp"

#include <unordered_map>

#include "ckptw/error.hpp"
#include "format/dtype_table.hpp"
#include "format/scalar_type.hpp"
#include "ckptw/key_path.hpp"

namespace ckptw {
namespace {

const char* kind_name(Value::Kind kind) {
  switch (kind) {
    case Value::Kind::kNone: return "NoneType";
    case Value::Kind::kBool: return "bool";
    case Value::Kind::kInt:
    case Value::Kind::kBigInt: return "int";
    case Value::Kind::kFloat: return "float";
    case Value::Kind::kComplex: return "complex";
    case Value::Kind::kBytes: return "bytes";
    case Value::Kind::kByteArray: return "bytearray";
    case Value::Kind::kSet: return "set";
    case Value::Kind::kCounter: return "collections.Counter";
    case Value::Kind::kSize: return "torch.Size";
    case Value::Kind::kDtype: return "torch.dtype";
    case Value::Kind::kDevice: return "torch.device";
    case Value::Kind::kString: return "str";
    case Value::Kind::kTensor: return "torch.Tensor";
    case Value::Kind::kParameter: return "torch.nn.Parameter";
    case Value::Kind::kList: return "list";
    case Value::Kind::kTuple: return "tuple";
    case Value::Kind::kDict: return "dict";
    case Value::Kind::kOrderedDict: return "collections.OrderedDict";
  }
  return "?";
}

// IValue -> Value. One Value per IValue object that Python would see as one
// object: a TensorImpl, a list, a dict or a tuple reached twice.
class FromIValue {
 public:
  Value::Ptr convert(const c10::IValue& v, const std::string& key_path) {
    if (v.isNone()) return Value::none();
    if (v.isBool()) return Value::boolean(v.toBool());
    if (v.isInt()) return Value::integer(v.toInt());
    if (v.isDouble()) return Value::floating(v.toDouble());
    if (v.isString()) {
      // A C++ string has no identity: equal texts become one Value, as the
      // literals of a Python script are one interned object.
      const std::string& text = v.toStringRef();
      if (auto it = strings_.find(text); it != strings_.end()) return it->second;
      return strings_.emplace(text, Value::string(text)).first->second;
    }
    if (v.isDevice()) {
      const c10::Device device = v.toDevice();
      return Value::device(c10::DeviceTypeName(device.type(), /*lower_case=*/true),
                           device.has_index() ? device.index() : -1);
    }
    if (v.isTensor()) {
      const at::Tensor& t = v.toTensor();
      return shared(t.defined() ? static_cast<const void*>(t.unsafeGetTensorImpl()) : nullptr,
                    [&] { return Value::tensor(t); });
    }
    if (v.isGenericDict()) {
      return shared(v.internalToPointer(), [&] {
        Value::Entries entries;
        for (const auto& entry : v.toGenericDict()) {
          Value::Ptr key = convert(entry.key(), key_path);  // the planner checks the key's type
          entries.emplace_back(key, convert(entry.value(), child_key_path(key_path, key_text(*key))));
        }
        return Value::dict(std::move(entries));
      });
    }
    if (v.isList()) {
      return shared(v.internalToPointer(), [&] {
        Value::Items items;
        const auto elements = v.toListRef();
        for (std::size_t i = 0; i < elements.size(); ++i) items.push_back(convert(elements[i], item_key_path(key_path, i)));
        return Value::list(std::move(items));
      });
    }
    if (v.isTuple()) {
      return shared(v.internalToPointer(), [&] {
        Value::Items items;
        const auto& elements = v.toTupleRef().elements();
        for (std::size_t i = 0; i < elements.size(); ++i) items.push_back(convert(elements[i], item_key_path(key_path, i)));
        return Value::tuple(std::move(items));
      });
    }
    throw FormatError("cannot save a value of type " + std::string(v.tagKind()) +
                          " (supported: tensor, dict, list, tuple, int, float, bool, str, None, Device; torch.load's "
                          "weights_only would refuse others too)",
                      "", key_path);
  }

 private:
  template <typename Make>
  Value::Ptr shared(const void* identity, Make make) {
    if (identity == nullptr) return make();
    if (auto it = seen_.find(identity); it != seen_.end()) return it->second;
    Value::Ptr value = make();
    seen_.emplace(identity, value);
    return value;
  }

  std::unordered_map<const void*, Value::Ptr> seen_;
  std::unordered_map<std::string, Value::Ptr> strings_;
};

// Value -> IValue, keeping the sharing IValue can express.
class ToIValue {
 public:
  c10::IValue convert(const Value::Ptr& v, const std::string& key_path) {
    if (auto it = seen_.find(v.get()); it != seen_.end()) return it->second;
    c10::IValue out = make(*v, key_path);
    if (v->is(Value::Kind::kTensor) || v->is(Value::Kind::kParameter) || v->is(Value::Kind::kList) ||
        v->is(Value::Kind::kSet) || v->is(Value::Kind::kCounter) || v->is(Value::Kind::kDict) ||
        v->is(Value::Kind::kOrderedDict) || v->is(Value::Kind::kTuple)) {
      seen_.emplace(v.get(), out);
    }
    return out;
  }

 private:
  c10::IValue make(const Value& v, const std::string& key_path) {
    switch (v.kind()) {
      case Value::Kind::kNone: return c10::IValue();
      case Value::Kind::kBool: return c10::IValue(v.as_bool());
      case Value::Kind::kInt: return c10::IValue(v.as_int());
      case Value::Kind::kBigInt:
        throw FormatError("an int wider than 64 bits has no IValue form (use read_value)", "", key_path);
      case Value::Kind::kFloat: return c10::IValue(v.as_float());
      case Value::Kind::kString: return c10::IValue(v.as_string());
      case Value::Kind::kComplex: return c10::IValue(c10::complex<double>(v.as_complex().first, v.as_complex().second));
      case Value::Kind::kBytes:
      case Value::Kind::kByteArray: return c10::IValue(v.as_bytes());
      case Value::Kind::kSize: return c10::IValue(v.as_size());
      case Value::Kind::kDtype: {
        std::optional<c10::ScalarType> type = detail::scalar_type_for(v.dtype_name());
        if (!type) throw FormatError("dtype " + v.dtype_name() + " is not supported by this LibTorch", "", key_path);
        return c10::IValue(*type);
      }
      case Value::Kind::kDevice:
        try {
          return c10::IValue(c10::Device(v.device_index() < 0 ? v.device_type()
                                                               : v.device_type() + ":" + std::to_string(v.device_index())));
        } catch (const c10::Error&) {
          throw FormatError("device '" + v.device_type() + "' is not known to this LibTorch", "", key_path);
        }
      case Value::Kind::kTensor:
      case Value::Kind::kParameter: return c10::IValue(v.as_tensor());
      case Value::Kind::kList:
      case Value::Kind::kSet: {
        c10::impl::GenericList list(c10::AnyType::get());
        for (std::size_t i = 0; i < v.items().size(); ++i) list.push_back(convert(v.items()[i], item_key_path(key_path, i)));
        return c10::IValue(list);
      }
      case Value::Kind::kTuple: {
        std::vector<c10::IValue> items;
        for (std::size_t i = 0; i < v.items().size(); ++i) items.push_back(convert(v.items()[i], item_key_path(key_path, i)));
        return c10::IValue(c10::ivalue::Tuple::create(std::move(items)));
      }
      case Value::Kind::kDict:
      case Value::Kind::kOrderedDict:
      case Value::Kind::kCounter: return dict(v, key_path);
    }
    throw std::logic_error("ckptw: unknown Value kind");
  }

  c10::IValue dict(const Value& v, const std::string& key_path) {
    Value::Kind key_kind = Value::Kind::kString;  // an empty dict: string keys, as a state dict
    if (!v.entries().empty()) key_kind = v.entries().front().first->kind();
    c10::TypePtr key_type;
    switch (key_kind) {
      case Value::Kind::kString: key_type = c10::StringType::get(); break;
      case Value::Kind::kInt: key_type = c10::IntType::get(); break;
      case Value::Kind::kBool: key_type = c10::BoolType::get(); break;
      case Value::Kind::kFloat: key_type = c10::FloatType::get(); break;
      default:
        throw FormatError(std::string("a dict with ") + kind_name(key_kind) + " keys has no IValue form (use read_value)",
                          "", key_path);
    }
    c10::impl::GenericDict out(key_type, c10::AnyType::get());
    for (const auto& [key, value] : v.entries()) {
      if (!key->is(key_kind)) {
        throw FormatError(std::string("a dict with both ") + kind_name(key_kind) + " and " + key->type_name() +
                              " keys has no IValue form (use read_value)",
                          "", key_path);
      }
      out.insert_or_assign(convert(key, key_path), convert(value, child_key_path(key_path, key_text(*key))));
    }
    return c10::IValue(out);
  }

  std::unordered_map<const Value*, c10::IValue> seen_;
};

}  // namespace

Value::Ptr Value::none() {
  static const Ptr none = std::shared_ptr<Value>(new Value(Kind::kNone));
  return none;
}

Value::Ptr Value::boolean(bool value) {
  auto v = std::shared_ptr<Value>(new Value(Kind::kBool));
  v->boolean_ = value;
  return v;
}

Value::Ptr Value::integer(std::int64_t value) {
  auto v = std::shared_ptr<Value>(new Value(Kind::kInt));
  v->integer_ = value;
  return v;
}

Value::Ptr Value::big_integer(std::string bytes) {
  // Minimal form, as CPython's encode_long: drop a top byte that only
  // repeats the sign of the byte below it.
  while (bytes.size() > 1) {
    const auto top = static_cast<unsigned char>(bytes.back());
    const auto next = static_cast<unsigned char>(bytes[bytes.size() - 2]);
    if (!((top == 0x00 && !(next & 0x80)) || (top == 0xFF && (next & 0x80)))) break;
    bytes.pop_back();
  }
  if (bytes.size() <= 8) {
    std::uint64_t bits = 0;
    for (std::size_t i = bytes.size(); i-- > 0;) bits = (bits << 8) | static_cast<unsigned char>(bytes[i]);
    if (!bytes.empty() && bytes.size() < 8 && (static_cast<unsigned char>(bytes.back()) & 0x80)) {
      bits |= ~std::uint64_t{0} << (8 * bytes.size());
    }
    return integer(static_cast<std::int64_t>(bits));
  }
  auto v = std::shared_ptr<Value>(new Value(Kind::kBigInt));
  v->text_ = std::move(bytes);
  return v;
}

Value::Ptr Value::unsigned_integer(std::uint64_t value) {
  if (value <= static_cast<std::uint64_t>(INT64_MAX)) return integer(static_cast<std::int64_t>(value));
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>(value >> (8 * i)));
  bytes.push_back('\0');  // the sign byte: positive
  return big_integer(std::move(bytes));
}

Value::Ptr Value::floating(double value) {
  auto v = std::shared_ptr<Value>(new Value(Kind::kFloat));
  v->floating_ = value;
  return v;
}

Value::Ptr Value::complex_number(double real, double imag) {
  auto v = std::shared_ptr<Value>(new Value(Kind::kComplex));
  v->floating_ = real;
  v->imag_ = imag;
  return v;
}

Value::Ptr Value::bytes(std::string value) {
  auto v = std::shared_ptr<Value>(new Value(Kind::kBytes));
  v->text_ = std::move(value);
  return v;
}

Value::Ptr Value::bytearray(std::string value) {
  auto v = std::shared_ptr<Value>(new Value(Kind::kByteArray));
  v->text_ = std::move(value);
  return v;
}

Value::Ptr Value::set(Items items) {
  auto v = std::shared_ptr<Value>(new Value(Kind::kSet));
  v->items_ = std::move(items);
  return v;
}

Value::Ptr Value::counter(Entries entries) {
  auto v = std::shared_ptr<Value>(new Value(Kind::kCounter));
  v->entries_ = std::move(entries);
  return v;
}

Value::Ptr Value::size(std::vector<std::int64_t> dims) {
  auto v = std::shared_ptr<Value>(new Value(Kind::kSize));
  v->dims_ = std::move(dims);
  return v;
}

Value::Ptr Value::dtype(std::string torch_name) {
  if (detail::dtype_by_torch_name(torch_name) == nullptr) {
    throw UsageError("'" + torch_name + "' is not a dtype the .pt format knows (torch names: float32, bfloat16, ...)");
  }
  auto v = std::shared_ptr<Value>(new Value(Kind::kDtype));
  v->text_ = std::move(torch_name);
  return v;
}

Value::Ptr Value::device(std::string type, std::int64_t index) {
  auto v = std::shared_ptr<Value>(new Value(Kind::kDevice));
  v->text_ = std::move(type);
  v->integer_ = index < 0 ? -1 : index;
  return v;
}

Value::Ptr Value::string(std::string value) {
  auto v = std::shared_ptr<Value>(new Value(Kind::kString));
  v->text_ = std::move(value);
  return v;
}

namespace {

void check_attributes(const Value::Ptr& attributes, const char* owner) {
  if (!attributes) return;
  if (!attributes->is(Value::Kind::kDict)) {
    throw UsageError(std::string(owner) + "'s attributes must be a dict, not " + attributes->type_name());
  }
  for (const auto& [key, item] : attributes->entries()) {
    if (!key->is(Value::Kind::kString)) {
      throw UsageError(std::string(owner) + "'s attribute names must be str, not " + key->type_name());
    }
  }
}

}  // namespace

Value::Ptr Value::tensor(at::Tensor value, Ptr attributes) {
  check_attributes(attributes, "a tensor");
  auto v = std::shared_ptr<Value>(new Value(Kind::kTensor));
  v->tensor_ = std::move(value);
  v->attributes_ = std::move(attributes);
  return v;
}

Value::Ptr Value::streamed_tensor(at::Tensor layout, std::shared_ptr<PayloadSource> source) {
  if (!layout.defined() || !layout.is_meta()) {
    throw UsageError("a streamed tensor's layout must be a meta tensor (torch.empty(..., device=\"meta\"))");
  }
  if (!source) throw UsageError("a streamed tensor needs a PayloadSource");
  auto v = std::shared_ptr<Value>(new Value(Kind::kTensor));
  v->tensor_ = std::move(layout);
  v->source_ = std::move(source);
  return v;
}

Value::Ptr Value::parameter(at::Tensor data, bool requires_grad, Ptr attributes) {
  check_attributes(attributes, "a Parameter");
  auto v = std::shared_ptr<Value>(new Value(Kind::kParameter));
  v->tensor_ = data.defined() ? data.detach().requires_grad_(requires_grad) : data;
  v->attributes_ = std::move(attributes);
  return v;
}

Value::Ptr Value::list(Items items) {
  auto v = std::shared_ptr<Value>(new Value(Kind::kList));
  v->items_ = std::move(items);
  return v;
}

Value::Ptr Value::tuple(Items items) {
  auto v = std::shared_ptr<Value>(new Value(Kind::kTuple));
  v->items_ = std::move(items);
  return v;
}

Value::Ptr Value::dict(Entries entries) {
  auto v = std::shared_ptr<Value>(new Value(Kind::kDict));
  v->entries_ = std::move(entries);
  return v;
}

Value::Ptr Value::ordered_dict(Entries entries, Ptr attributes) {
  check_attributes(attributes, "an OrderedDict");
  auto v = std::shared_ptr<Value>(new Value(Kind::kOrderedDict));
  v->entries_ = std::move(entries);
  v->attributes_ = std::move(attributes);
  return v;
}

const char* Value::type_name() const noexcept { return kind_name(kind_); }

void Value::expect(Kind kind) const {
  if (kind_ != kind) {
    throw UsageError(std::string("Value is a ") + type_name() + ", not a " + kind_name(kind));
  }
}

bool Value::as_bool() const {
  expect(Kind::kBool);
  return boolean_;
}

std::int64_t Value::as_int() const {
  expect(Kind::kInt);
  return integer_;
}

const std::string& Value::big_integer_bytes() const {
  expect(Kind::kBigInt);
  return text_;
}

double Value::as_float() const {
  expect(Kind::kFloat);
  return floating_;
}

std::pair<double, double> Value::as_complex() const {
  expect(Kind::kComplex);
  return {floating_, imag_};
}

const std::string& Value::as_bytes() const {
  if (kind_ != Kind::kByteArray) expect(Kind::kBytes);
  return text_;
}

const std::vector<std::int64_t>& Value::as_size() const {
  expect(Kind::kSize);
  return dims_;
}

const std::string& Value::dtype_name() const {
  expect(Kind::kDtype);
  return text_;
}

const std::string& Value::device_type() const {
  expect(Kind::kDevice);
  return text_;
}

std::int64_t Value::device_index() const {
  expect(Kind::kDevice);
  return integer_;
}

const std::string& Value::as_string() const {
  expect(Kind::kString);
  return text_;
}

const at::Tensor& Value::as_tensor() const {
  if (kind_ != Kind::kParameter) expect(Kind::kTensor);
  return tensor_;
}

const std::shared_ptr<PayloadSource>& Value::payload_source() const {
  expect(Kind::kTensor);
  return source_;
}

const Value::Items& Value::items() const {
  if (kind_ != Kind::kTuple && kind_ != Kind::kSet) expect(Kind::kList);
  return items_;
}

const Value::Entries& Value::entries() const {
  if (kind_ != Kind::kOrderedDict && kind_ != Kind::kCounter) expect(Kind::kDict);
  return entries_;
}

const Value::Ptr& Value::attributes() const {
  if (kind_ != Kind::kTensor && kind_ != Kind::kParameter) expect(Kind::kOrderedDict);
  return attributes_;
}

Value::Ptr Value::get(std::string_view key) const {
  for (const auto& [k, v] : entries()) {
    if (k->is(Kind::kString) && k->as_string() == key) return v;
  }
  return nullptr;
}

Value::Ptr to_value(const StateDict& state_dict) { return FromIValue().convert(c10::IValue(state_dict), ""); }

Value::Ptr to_value(const c10::IValue& value) { return FromIValue().convert(value, ""); }

c10::IValue to_ivalue(const Value::Ptr& value) { return ToIValue().convert(value, ""); }

}  // namespace ckptw
