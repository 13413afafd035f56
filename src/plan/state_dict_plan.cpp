#include "plan/state_dict_plan.hpp"

#include <unordered_map>

#include <ATen/ATen.h>

#include "ckptw/error.hpp"
#include "format/scalar_type.hpp"
#include "format/pickle_writer.hpp"
#include "ckptw/value.hpp"
#include "ckptw/key_path.hpp"

namespace ckptw::detail {
namespace {

struct StorageEntry {
  std::size_t index;
  c10::ScalarType dtype;
};

class Planner {
 public:
  explicit Planner(const PlanOptions& options) : options_(options) {
    plan_.folder = options.folder;
    plan_.alignment = options.alignment;
  }

  FilePlan run(const Value::Ptr& root) {
    value(root, KeyPathTrail{}, 0);

    const std::string alignment = std::to_string(plan_.alignment);
    std::vector<PlannedRecord> storages = std::move(plan_.records);
    plan_.records = {};
    plan_.records.reserve(storages.size() + 6);  // the storages and the six records around them
    // torch >= 2.7 record set and order (shared spec §1).
    plan_.add_owned_record("data.pkl", pickle_.finish());
    plan_.add_owned_record(".format_version", "1");
    plan_.add_owned_record(".storage_alignment", alignment);
    plan_.add_owned_record("byteorder", "little");
    for (auto& record : storages) plan_.records.push_back(std::move(record));
    plan_.add_owned_record("version", "3\n");
    PlannedRecord id;
    id.name = ".data/serialization_id";
    id.size = kSerializationIdSize;
    id.is_serialization_id = true;
    plan_.records.push_back(std::move(id));

    plan_.storage_count = storages_.size();
    lay_out(plan_);
    return std::move(plan_);
  }

 private:
  [[noreturn]] static void fail(const std::string& what, const KeyPathTrail& trail) {
    throw FormatError(what, "", trail.key_path());
  }

  // Emits `v`, or a memo fetch when this same Value was emitted before (the
  // pickler's identity memo).
  void value(const Value::Ptr& v, const KeyPathTrail& trail, std::size_t depth) {
    if (depth > Value::kMaxDepth) fail("containers nested deeper than " + std::to_string(Value::kMaxDepth), trail);
    // A Value held by one owner, its parent, is reached once: only values
    // with more owners can come round again. (use_count() may read high
    // while another thread drops a reference, never low, so the test errs
    // toward remembering.) Remembering all of them was a hash insert per
    // value, a tenth of planning 100,000 small tensors.
    const bool shared = v.use_count() > 1;
    if (shared) {
      if (auto it = memo_.find(v.get()); it != memo_.end()) return pickle_.memo_get(it->second);
    }
    const std::uint32_t id = emit(*v, trail, depth);
    if (shared && id != PickleWriter::kNotMemoized) memo_.emplace(v.get(), id);
  }

  std::uint32_t emit(const Value& v, const KeyPathTrail& trail, std::size_t depth) {
    switch (v.kind()) {
      case Value::Kind::kNone: pickle_.none(); break;
      case Value::Kind::kBool: pickle_.boolean(v.as_bool()); break;
      case Value::Kind::kInt: pickle_.integer(v.as_int()); break;
      case Value::Kind::kBigInt:
        if (v.big_integer_bytes().size() > PickleWriter::kMaxLongBytes) {
          fail("an int wider than " + std::to_string(PickleWriter::kMaxLongBytes * 8) + " bits cannot be saved", trail);
        }
        pickle_.long_integer(v.big_integer_bytes());
        break;
      case Value::Kind::kFloat: pickle_.floating(v.as_float()); break;
      case Value::Kind::kString:
        // One string object per Value, as CPython memoizes by identity; the
        // literals torch writes itself are shared by text (see PickleWriter::string).
        if (PickleWriter::is_interned_literal(v.as_string())) {
          pickle_.string(v.as_string());
          break;
        }
        return pickle_.fresh_string(v.as_string());
      case Value::Kind::kComplex:
        return pickle_.reduce("__builtin__", "complex", 2, [&](std::size_t i) {
          pickle_.floating(i == 0 ? v.as_complex().first : v.as_complex().second);
        });
      case Value::Kind::kBytes:
        if (v.as_bytes().empty()) {
          fail("an empty bytes cannot be saved: torch.load(weights_only=True) refuses it (it is pickled through the "
               "bytes global)",
               trail);
        }
        return bytes(v.as_bytes());
      case Value::Kind::kByteArray:
        return pickle_.reduce("__builtin__", "bytearray", 1, [&](std::size_t) { (void)bytes(v.as_bytes()); });
      case Value::Kind::kSize:
        return pickle_.reduce("torch", "Size", 1, [&](std::size_t) {
          (void)pickle_.tuple(v.as_size().size(), [&](std::size_t i) { pickle_.integer(v.as_size()[i]); });
        });
      case Value::Kind::kDtype:
        pickle_.global("torch", v.dtype_name());
        break;
      case Value::Kind::kDevice:
        // device.__reduce__ gives (type,) or (type, index); the type string is
        // made afresh each time, so it is never a memo hit.
        return pickle_.reduce("torch", "device", v.device_index() < 0 ? 1 : 2, [&](std::size_t i) {
          if (i == 0) {
            (void)pickle_.fresh_string(v.device_type());
          } else {
            pickle_.integer(v.device_index());
          }
        });
      case Value::Kind::kSet:
        return pickle_.reduce("__builtin__", "set", 1, [&](std::size_t) {
          (void)pickle_.list(v.items().size(),
                             [&](std::size_t i) { value(v.items()[i], KeyPathTrail{&trail, nullptr, i}, depth + 1); });
        });
      case Value::Kind::kCounter:
        return pickle_.reduce("collections", "Counter", 1, [&](std::size_t) {
          (void)pickle_.dict(v.entries().size(), entry_emitter(v, trail, depth));
        });
      case Value::Kind::kTensor:
      case Value::Kind::kParameter: return tensor(v, trail, depth);
      case Value::Kind::kList:
        return pickle_.list(v.items().size(),
                            [&](std::size_t i) { value(v.items()[i], KeyPathTrail{&trail, nullptr, i}, depth + 1); });
      case Value::Kind::kTuple:
        return pickle_.tuple(v.items().size(),
                             [&](std::size_t i) { value(v.items()[i], KeyPathTrail{&trail, nullptr, i}, depth + 1); });
      case Value::Kind::kDict: return pickle_.dict(v.entries().size(), entry_emitter(v, trail, depth));
      case Value::Kind::kOrderedDict: {
        const Value::Ptr& attributes = v.attributes();
        const bool has_state = attributes && !attributes->entries().empty();
        return pickle_.ordered_dict(v.entries().size(), entry_emitter(v, trail, depth), has_state,
                                    [&] { value(attributes, trail, depth + 1); });
      }
    }
    return PickleWriter::kNotMemoized;
  }

  // Writes entry i of dict `d`: its key, then its value.
  std::function<void(std::size_t)> entry_emitter(const Value& d, const KeyPathTrail& trail, std::size_t depth) {
    return [this, &d, &trail, depth](std::size_t i) {
      const auto& [key, item] = d.entries()[i];
      check_key(*key, trail);
      value(key, trail, depth + 1);
      value(item, KeyPathTrail{&trail, key.get(), 0}, depth + 1);
    };
  }

  // bytes as protocol 2 pickles them: _codecs.encode(text, "latin1"), the
  // text being the bytes decoded as latin-1 (a fresh string object).
  std::uint32_t bytes(const std::string& raw) {
    std::string latin1_as_utf8;
    for (const unsigned char c : raw) {
      if (c < 0x80) {
        latin1_as_utf8.push_back(static_cast<char>(c));
      } else {
        latin1_as_utf8.push_back(static_cast<char>(0xC0 | (c >> 6)));
        latin1_as_utf8.push_back(static_cast<char>(0x80 | (c & 0x3F)));
      }
    }
    return pickle_.reduce("_codecs", "encode", 2, [&](std::size_t i) {
      if (i == 0) return (void)pickle_.fresh_string(latin1_as_utf8);
      pickle_.string("latin1");
    });
  }

  // The key types torch.load(weights_only=True) can rebuild and hash.
  void check_key(const Value& key, const KeyPathTrail& trail) const {
    switch (key.kind()) {
      case Value::Kind::kString:
      case Value::Kind::kInt:
      case Value::Kind::kBigInt:
      case Value::Kind::kComplex:
      case Value::Kind::kBytes:
      case Value::Kind::kDtype:
      case Value::Kind::kDevice:
      case Value::Kind::kSize:
      case Value::Kind::kBool:
      case Value::Kind::kFloat:
      case Value::Kind::kNone: return;
      case Value::Kind::kTuple:
        for (const auto& item : key.items()) check_key(*item, trail);
        return;
      default:
        fail(std::string("a dict key of type ") + key.type_name() +
                 " cannot be saved (keys must be str, int, bool, float, None or tuples of those)",
             trail);
    }
  }

  // A tensor or parameter, as their __reduce_ex__ pickle them: a parameter's
  // data as a tensor that does not require grad, inside _rebuild_parameter;
  // attributes (a non-empty __dict__) through _rebuild_from_type_v2 or
  // _rebuild_parameter_with_state.
  std::uint32_t tensor(const Value& v, const KeyPathTrail& trail, std::size_t depth) {
    const at::Tensor& t = v.as_tensor();
    const Value::Ptr& attributes = v.attributes();
    std::function<void()> emit_state;
    if (attributes && !attributes->entries().empty()) emit_state = [&] { value(attributes, trail, depth + 1); };
    if (!t.defined()) fail("undefined tensor", trail);
    if (t.is_sparse() || t.layout() != c10::kStrided) fail("sparse or non-strided tensors are not supported", trail);
    if (t.is_quantized()) fail("quantized tensors are not supported", trail);
    if (t.is_nested()) fail("nested tensors are not supported", trail);
    static const std::shared_ptr<PayloadSource> kHeld;  // a tensor's bytes are in its storage
    const std::shared_ptr<PayloadSource>& source = v.is(Value::Kind::kTensor) ? v.payload_source() : kHeld;
    if (t.is_meta() && source == nullptr) {
      fail("meta tensors are not saved by ckptw yet (torch.save writes them through "
           "_rebuild_meta_tensor_no_storage, without data)",
           trail);
    }
    if (!t.has_storage()) fail("tensor has no storage (e.g. a functional or fake tensor)", trail);

    const DtypeInfo* dtype = dtype_for(t.scalar_type());
    if (dtype == nullptr) {
      fail("dtype " + std::string(c10::toString(t.scalar_type())) + " cannot be saved in the .pt format", trail);
    }
    const std::size_t element_size = dtype->element_size;
    // One TensorPickle for every tensor: its strings and vectors keep their
    // capacity, so a tensor costs no allocation here. Not for a tensor with
    // attributes: they may hold tensors, planned while this one is written.
    TensorPickle with_state;
    TensorPickle& p = emit_state ? with_state : tensor_pickle_;
    p.legacy_storage_class = dtype->legacy_storage;
    p.v3_dtype = p.legacy_storage_class.empty() ? dtype->torch_name : std::string_view();

    const c10::Storage& storage = t.storage();
    const std::uint64_t nbytes = storage.nbytes();
    if (nbytes % element_size != 0) {
      fail("storage of " + std::to_string(nbytes) + " bytes is not a whole number of " + std::string(dtype->c10_name) +
               " elements",
           trail);
    }
    p.storage_numel = static_cast<std::int64_t>(p.v3_dtype.empty() ? nbytes / element_size : nbytes);
    p.storage_index = storage_for(t, storage, nbytes, source, trail);
    // A streamed tensor is a CPU tensor whose bytes arrive while writing.
    p.location = options_.record_device_as_cpu || source != nullptr ? "cpu" : location_of(t.device());
    p.storage_offset = t.storage_offset();
    p.sizes.assign(t.sizes().begin(), t.sizes().end());
    p.strides.assign(t.strides().begin(), t.strides().end());
    p.requires_grad = t.requires_grad();
    p.neg = t.is_neg();
    p.conj = t.is_conj();
    ++plan_.tensor_count;
    if (v.is(Value::Kind::kParameter)) return pickle_.parameter(p, emit_state);
    if (emit_state) return pickle_.tensor_with_state(p, emit_state);
    return pickle_.tensor(p);
  }

  static std::string location_of(const c10::Device& device) {
    if (device.is_cpu()) return "cpu";
    // torch.save records "<type>:<index>" (its location_tag), e.g. "cuda:0".
    return c10::DeviceTypeName(device.type(), /*lower_case=*/true) + ":" +
           std::to_string(device.has_index() ? device.index() : 0);
  }

  std::size_t storage_for(const at::Tensor& t, const c10::Storage& storage, std::uint64_t nbytes,
                          const std::shared_ptr<PayloadSource>& source, const KeyPathTrail& trail) {
    const void* identity = storage.unsafeGetStorageImpl();
    if (auto it = storages_.find(identity); it != storages_.end()) {
      // torch.save refuses the same non-empty storage under two dtypes.
      if (it->second.dtype != t.scalar_type() && nbytes > 0) {
        fail("tensor views a storage already saved as " + std::string(c10::toString(it->second.dtype)) +
                 " as " + c10::toString(t.scalar_type()) +
                 "; torch.save cannot store one storage under two dtypes",
             trail);
      }
      return it->second.index;
    }
    const std::size_t index = storages_.size();
    storages_.emplace(identity, StorageEntry{index, t.scalar_type()});

    PlannedRecord record;
    record.name = "data/" + std::to_string(index);
    record.size = nbytes;
    if (nbytes > 0 && source != nullptr) {
      record.source = source.get();
      plan_.keep_alive.push_back(source);
    } else if (nbytes > 0) {
      if (storage.data() == nullptr) fail("tensor storage has no data pointer", trail);
      if (!t.is_cpu() && !t.is_cuda()) {
        fail("tensors on " + t.device().str() + " are not supported (CPU and CUDA are)", trail);
      }
      record.data = static_cast<const unsigned char*>(storage.data());
      record.device = t.is_cuda() ? t.device().index() : -1;
      if (!storages_alive_) {
        storages_alive_ = std::make_shared<std::vector<c10::Storage>>();
        plan_.keep_alive.push_back(storages_alive_);
      }
      storages_alive_->push_back(storage);
    }
    plan_.records.push_back(std::move(record));
    return index;
  }

  const PlanOptions options_;
  FilePlan plan_;
  PickleWriter pickle_;
  std::unordered_map<const void*, StorageEntry> storages_;
  std::unordered_map<const Value*, std::uint32_t> memo_;  // emitted shared Values: their memo ids
  // Every saved storage, one keep_alive owner for all (a reference count
  // each, not an allocation each).
  std::shared_ptr<std::vector<c10::Storage>> storages_alive_;
  TensorPickle tensor_pickle_;
};

}  // namespace

FilePlan plan_value(const Value::Ptr& root, const PlanOptions& options) { return Planner(options).run(root); }

FilePlan plan_state_dict(const StateDict& state_dict, const PlanOptions& options) {
  return plan_value(to_value(state_dict), options);
}

}  // namespace ckptw::detail
