#include "plan/state_dict_plan.hpp"

#include <unordered_map>

#include <ATen/ATen.h>

#include "ckptw/error.hpp"
#include "format/dtype_table.hpp"
#include "format/pickle_writer.hpp"

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

  FilePlan run(const StateDict& state_dict) {
    std::vector<std::pair<std::string, const c10::IValue*>> items;
    items.reserve(state_dict.size());
    for (const auto& entry : state_dict) items.emplace_back(entry.key(), &entry.value());
    pickle_.dict(items.size(), [&](std::size_t i) {
      pickle_.string(items[i].first);
      value(*items[i].second, items[i].first);
    });

    const std::string alignment = std::to_string(plan_.alignment);
    std::vector<PlannedRecord> storages = std::move(plan_.records);
    plan_.records.clear();
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
  [[noreturn]] static void fail(const std::string& what, const std::string& key_path) {
    throw FormatError(what, "", key_path);
  }

  void value(const c10::IValue& v, const std::string& key_path) {
    if (v.isTensor()) return tensor(v.toTensor(), key_path);
    if (v.isNone()) return pickle_.none();
    if (v.isBool()) return pickle_.boolean(v.toBool());
    if (v.isInt()) return pickle_.integer(v.toInt());
    if (v.isDouble()) return pickle_.floating(v.toDouble());
    if (v.isString()) return pickle_.string(v.toStringRef());
    if (v.isGenericDict()) return dict(v.toGenericDict(), key_path);
    if (v.isList()) {
      auto elements = v.toListRef();
      return pickle_.list(elements.size(), [&](std::size_t i) {
        value(elements[i], key_path + "[" + std::to_string(i) + "]");
      });
    }
    if (v.isTuple()) {
      const auto& elements = v.toTupleRef().elements();
      return pickle_.tuple(elements.size(), [&](std::size_t i) {
        value(elements[i], key_path + "[" + std::to_string(i) + "]");
      });
    }
    fail("cannot encode a value of type " + std::string(v.tagKind()) +
             " (supported: tensor, dict with string keys, list, tuple, int, float, bool, str, None)",
         key_path);
  }

  void dict(const c10::impl::GenericDict& d, const std::string& key_path) {
    std::vector<std::pair<std::string, const c10::IValue*>> items;
    items.reserve(d.size());
    for (const auto& entry : d) {
      if (!entry.key().isString()) {
        fail("dict key of type " + std::string(entry.key().tagKind()) +
                 " is not a string (state dict keys must be strings)",
             key_path);
      }
      items.emplace_back(entry.key().toStringRef(), &entry.value());
    }
    pickle_.dict(items.size(), [&](std::size_t i) {
      pickle_.string(items[i].first);
      value(*items[i].second, key_path + "." + items[i].first);
    });
  }

  void tensor(const at::Tensor& t, const std::string& key_path) {
    if (!t.defined()) fail("undefined tensor", key_path);
    if (t.is_sparse() || t.layout() != c10::kStrided) fail("sparse or non-strided tensors are not supported", key_path);
    if (t.is_quantized()) fail("quantized tensors are not supported", key_path);
    if (t.is_nested()) fail("nested tensors are not supported", key_path);
    if (t.is_meta()) fail("meta tensors have no data to save", key_path);
    if (t.is_conj() || t.is_neg()) {
      fail("tensor has a lazy conjugate/negative bit; call resolve_conj()/resolve_neg() first", key_path);
    }
    if (!t.has_storage()) fail("tensor has no storage (e.g. a functional or fake tensor)", key_path);

    const std::string dtype_name = c10::toString(t.scalar_type());
    const DtypeInfo* dtype = dtype_by_c10_name(dtype_name);
    if (dtype == nullptr) fail("dtype " + dtype_name + " cannot be saved in the .pt format", key_path);
    const std::size_t element_size = dtype->element_size;
    TensorPickle p;
    p.legacy_storage_class = dtype->legacy_storage;
    if (p.legacy_storage_class.empty()) p.v3_dtype = dtype->torch_name;

    const c10::Storage& storage = t.storage();
    const std::uint64_t nbytes = storage.nbytes();
    if (nbytes % element_size != 0) {
      fail("storage of " + std::to_string(nbytes) + " bytes is not a whole number of " + dtype_name +
               " elements",
           key_path);
    }
    p.storage_numel = static_cast<std::int64_t>(p.v3_dtype.empty() ? nbytes / element_size : nbytes);
    p.storage_index = storage_for(t, storage, nbytes, key_path);
    p.location = options_.record_device_as_cpu ? "cpu" : location_of(t.device());
    p.storage_offset = t.storage_offset();
    p.sizes = t.sizes().vec();
    p.strides = t.strides().vec();
    p.requires_grad = t.requires_grad();
    pickle_.tensor(p);
    ++plan_.tensor_count;
  }

  static std::string location_of(const c10::Device& device) {
    if (device.is_cpu()) return "cpu";
    // torch.save records "<type>:<index>" (its location_tag), e.g. "cuda:0".
    return c10::DeviceTypeName(device.type(), /*lower_case=*/true) + ":" +
           std::to_string(device.has_index() ? device.index() : 0);
  }

  std::size_t storage_for(const at::Tensor& t, const c10::Storage& storage, std::uint64_t nbytes,
                          const std::string& key_path) {
    const void* identity = storage.unsafeGetStorageImpl();
    if (auto it = storages_.find(identity); it != storages_.end()) {
      // torch.save refuses the same non-empty storage under two dtypes.
      if (it->second.dtype != t.scalar_type() && nbytes > 0) {
        fail("tensor views a storage already saved as " + std::string(c10::toString(it->second.dtype)) +
                 " as " + c10::toString(t.scalar_type()) +
                 "; torch.save cannot store one storage under two dtypes",
             key_path);
      }
      return it->second.index;
    }
    const std::size_t index = storages_.size();
    storages_.emplace(identity, StorageEntry{index, t.scalar_type()});

    PlannedRecord record;
    record.name = "data/" + std::to_string(index);
    record.size = nbytes;
    if (nbytes > 0) {
      if (storage.data() == nullptr) fail("tensor storage has no data pointer", key_path);
      if (!t.is_cpu() && !t.is_cuda()) {
        fail("tensors on " + t.device().str() + " are not supported (CPU and CUDA are)", key_path);
      }
      record.data = static_cast<const unsigned char*>(storage.data());
      record.device = t.is_cuda() ? t.device().index() : -1;
      plan_.keep_alive.push_back(std::make_shared<c10::Storage>(storage));
    }
    plan_.records.push_back(std::move(record));
    return index;
  }

  const PlanOptions options_;
  FilePlan plan_;
  PickleWriter pickle_;
  std::unordered_map<const void*, StorageEntry> storages_;
};

}  // namespace

FilePlan plan_state_dict(const StateDict& state_dict, const PlanOptions& options) {
  return Planner(options).run(state_dict);
}

}  // namespace ckptw::detail
