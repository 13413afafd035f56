#include "stage/snapshot.hpp"

#include <unordered_map>

#include <ATen/ATen.h>

#include "ckptw/error.hpp"

namespace ckptw::detail {
namespace {

class Snapshotter {
 public:
  c10::IValue copy(const c10::IValue& v, const std::string& key_path) {
    if (v.isTensor()) return tensor(v.toTensor(), key_path);
    if (v.isGenericDict()) {
      auto in = v.toGenericDict();
      c10::impl::GenericDict out(in.keyType(), in.valueType());
      for (const auto& e : in) {
        const std::string child = e.key().isString() ? e.key().toStringRef() : "<key>";
        out.insert(e.key(), copy(e.value(), key_path.empty() ? child : key_path + "." + child));
      }
      return out;
    }
    if (v.isList()) {
      c10::impl::GenericList out(c10::AnyType::get());
      auto items = v.toListRef();
      for (std::size_t i = 0; i < items.size(); ++i) out.push_back(copy(items[i], key_path + "[" + std::to_string(i) + "]"));
      return out;
    }
    if (v.isTuple()) {
      std::vector<c10::IValue> items;
      const auto& elements = v.toTupleRef().elements();
      for (std::size_t i = 0; i < elements.size(); ++i) {
        items.push_back(copy(elements[i], key_path + "[" + std::to_string(i) + "]"));
      }
      return c10::ivalue::Tuple::create(std::move(items));
    }
    return v;  // None, bool, int, double, string: immutable
  }

 private:
  at::Tensor tensor(const at::Tensor& t, const std::string& key_path) {
    if (!t.defined() || t.layout() != c10::kStrided || t.is_quantized() || t.is_nested() || t.is_meta() ||
        !t.has_storage()) {
      throw FormatError("tensor cannot be saved (undefined, sparse, quantized, nested, meta or storage-less)", "",
                        key_path);
    }
    const c10::Storage& storage = t.storage();
    const void* identity = storage.unsafeGetStorageImpl();
    auto it = copies_.find(identity);
    if (it == copies_.end()) {
      const auto nbytes = static_cast<std::int64_t>(storage.nbytes());
      at::Tensor bytes = at::empty({0}, t.options().dtype(at::kByte)).set_(storage, 0, {nbytes}, {1});
      // The snapshot lives in host memory, so a device tensor is recorded as
      // "cpu" (staging that keeps the device is the GPU path's).
      at::Tensor host = at::empty({nbytes}, at::TensorOptions().dtype(at::kByte));
      host.copy_(bytes);
      it = copies_.emplace(identity, host.storage()).first;
    }
    at::Tensor out = at::empty({0}, at::TensorOptions().dtype(t.scalar_type()))
                         .set_(it->second, t.storage_offset(), t.sizes(), t.strides());
    if (t.requires_grad()) out.set_requires_grad(true);
    return out;
  }

  std::unordered_map<const void*, c10::Storage> copies_;
};

}  // namespace

StateDict snapshot_state_dict(const StateDict& state_dict) {
  Snapshotter snapshotter;
  StateDict out = make_state_dict();
  for (const auto& e : state_dict) out.insert(e.key(), snapshotter.copy(e.value(), e.key()));
  return out;
}

}  // namespace ckptw::detail
