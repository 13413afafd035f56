#include "ckptw/checkpoint_reader.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <unordered_map>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "checksum/crc32.hpp"
#include "io/io_backend.hpp"
#include "ckptw/error.hpp"
#include "commit/manifest.hpp"
#include "format/dtype_table.hpp"
#include "format/scalar_type.hpp"
#include "read/pickle_reader.hpp"
#include "read/pt_inspect.hpp"
#include "read/verify.hpp"
#include "read/zip_index.hpp"
#include "stage/device_upload.hpp"
#include "util/byte_order.hpp"
#include "util/huge_pages.hpp"
#include "ckptw/key_path.hpp"

#if CKPTW_HAVE_CUDA
#include <c10/core/Event.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include "cuda_device_runtime.cuh"
#endif

namespace ckptw {
namespace {

using detail::PickleValue;
using detail::PickleValuePtr;
using Kind = PickleValue::Kind;

constexpr std::size_t kCrcChunk = std::size_t{8} << 20;

std::string key_text(const PickleValuePtr& key) {
  if (key->kind == Kind::kString) return key->text;
  if (key->kind == Kind::kInt) return std::to_string(key->integer);
  return "<key>";
}

c10::ScalarType scalar_type_named(const std::string& torch_name, const std::string& path, const std::string& key) {
  if (std::optional<c10::ScalarType> type = detail::scalar_type_for(torch_name)) return *type;
  throw FormatError("dtype " + torch_name + " is not supported by this LibTorch", path, key);
}

// Turns the pickle tree into IValues, reading each storage record once, on
// first use, so that a partial load reads only what it returns.
class Loader {
 public:
  Loader(const detail::ByteSource& file, detail::ZipIndex index, const ReadOptions& options)
      : file_(file), index_(std::move(index)), options_(options), swap_bytes_(data_is_big_endian()) {}

  // The Value of `v`: one Value per pickled object, so that what the pickle
  // shares (through its memo) stays shared.
  Value::Ptr value(const PickleValuePtr& v, const std::string& key_path, std::size_t depth = 0) {
    if (depth > detail::kMaxPickleDepth) {
      throw FormatError("containers nested too deeply (or cyclic)", file_.path(), key_path);
    }
    if (auto it = values_.find(v); it != values_.end()) return it->second;
    Value::Ptr out = make_value(*v, key_path, depth);
    values_.emplace(v, out);
    return out;
  }

  c10::IValue materialize(const PickleValuePtr& v, const std::string& key_path) {
    Value::Ptr loaded = value(v, key_path);
    try {
      return to_ivalue(loaded);
    } catch (const FormatError& e) {
      throw FormatError(e.message(), file_.path(), child_key_path(key_path, e.key_path()));
    }
  }

 private:
  Value::Ptr make_value(const PickleValue& v, const std::string& key_path, std::size_t depth) {
    switch (v.kind) {
      case Kind::kNone: return Value::none();
      case Kind::kBool: return Value::boolean(v.boolean);
      case Kind::kInt: return Value::integer(v.integer);
      case Kind::kBigInt: return Value::big_integer(v.text);
      case Kind::kFloat: return Value::floating(v.floating);
      case Kind::kString: return Value::string(v.text);
      case Kind::kTensor: {
        at::Tensor t = tensor(v.tensor, key_path);
        Value::Ptr attributes = v.attributes ? value(v.attributes, key_path, depth + 1) : nullptr;
        return v.tensor.parameter ? Value::parameter(t, v.tensor.requires_grad, std::move(attributes))
                                  : Value::tensor(t, std::move(attributes));
      }
      case Kind::kList:
      case Kind::kTuple: {
        Value::Items items;
        for (std::size_t i = 0; i < v.items.size(); ++i) {
          items.push_back(value(v.items[i], item_key_path(key_path, i), depth + 1));
        }
        return v.kind == Kind::kList ? Value::list(std::move(items)) : Value::tuple(std::move(items));
      }
      case Kind::kDict: {
        Value::Entries entries;
        for (const auto& [key, item] : v.entries) {
          entries.emplace_back(value(key, key_path, depth + 1), value(item, child_key_path(key_path, key_text(key)), depth + 1));
        }
        if (!v.ordered) return Value::dict(std::move(entries));
        return Value::ordered_dict(std::move(entries), v.attributes ? value(v.attributes, key_path, depth + 1) : nullptr);
      }
      case Kind::kReduced: return reduced(v, key_path, depth);
      case Kind::kGlobal:
        if (v.text.rfind("torch.", 0) == 0 && detail::dtype_by_torch_name(v.text.substr(6))) {
          return Value::dtype(v.text.substr(6));
        }
        break;
      case Kind::kStorage:
        break;
    }
    throw FormatError("a bare storage or global is not a state dict value", file_.path(), key_path);
  }

  // The objects the pickle VM rebuilt by REDUCE, their arguments checked there.
  Value::Ptr reduced(const PickleValue& v, const std::string& key_path, std::size_t depth) {
    const auto& a = v.items;
    if (v.text == "torch.Size") {
      std::vector<std::int64_t> dims;
      for (const auto& d : a[0]->items) dims.push_back(d->integer);
      return Value::size(std::move(dims));
    }
    if (v.text == "torch.device") return Value::device(a[0]->text, a.size() > 1 ? a[1]->integer : -1);
    if (v.text == "__builtin__.complex") return Value::complex_number(a[0]->floating, a[1]->floating);
    if (v.text == "_codecs.encode") return Value::bytes(latin1_bytes(a[0]->text, key_path));
    if (v.text == "__builtin__.bytearray") return Value::bytearray(value(a[0], key_path, depth + 1)->as_bytes());
    if (v.text == "__builtin__.set") {
      Value::Items items;
      for (std::size_t i = 0; i < a[0]->items.size(); ++i) {
        items.push_back(value(a[0]->items[i], item_key_path(key_path, i), depth + 1));
      }
      return Value::set(std::move(items));
    }
    // collections.Counter
    return Value::counter(value(a[0], key_path, depth + 1)->entries());
  }

  // The bytes a protocol-2 pickle spells as `text` decoded from latin-1.
  std::string latin1_bytes(const std::string& utf8, const std::string& key_path) const {
    std::string out;
    for (std::size_t i = 0; i < utf8.size(); ++i) {
      const auto c = static_cast<unsigned char>(utf8[i]);
      if (c < 0x80) {
        out.push_back(static_cast<char>(c));
      } else if ((c == 0xC2 || c == 0xC3) && i + 1 < utf8.size()) {
        out.push_back(static_cast<char>(((c & 0x03) << 6) | (static_cast<unsigned char>(utf8[++i]) & 0x3F)));
      } else {
        throw FormatError("bytes whose latin-1 text holds a character beyond U+00FF", file_.path(), key_path);
      }
    }
    return out;
  }

 public:
  at::Tensor tensor(const detail::PickledTensor& t, const std::string& key_path) {
    const c10::ScalarType dtype = scalar_type_named(t.dtype, file_.path(), key_path);
    c10::Storage storage = storage_for(t, key_path);
    try {
      at::Tensor out = at::empty({0}, at::TensorOptions().dtype(dtype).device(storage.device()))
                           .set_(storage, t.storage_offset, t.sizes, t.strides);
      if (t.requires_grad) out.set_requires_grad(true);
      // The lazy bits torch.save recorded (torch._utils.set_tensor_metadata):
      // the storage holds the values before negation / conjugation.
      if (t.neg) out._set_neg(true);
      if (t.conj) out._set_conj(true);
      return out;
    } catch (const c10::Error& e) {
      throw FormatError(std::string("cannot rebuild tensor: ") + e.what_without_backtrace(), file_.path(), key_path);
    }
  }

  const detail::ZipIndex& index() const { return index_; }

  // Reads every storage record `root` references, in file order, with
  // O_DIRECT straight into page-aligned tensor memory (no page-cache copy);
  // an I/O thread reads the next records while this thread checks CRCs.
  // Records bound for a GPU go through a few pinned chunks straight into
  // device memory (stage/device_upload.hpp), so pinned memory stays bounded.
  void prefetch(const PickleValuePtr& root, int fd) {
    std::map<std::string, std::string> keys;
    collect_storage_keys(root, keys, 0);
    struct Item {
      const detail::ZipRecord* record;
      std::string key;
      unsigned char* base;
      std::uint64_t start;  // page-aligned file offset of base[0]
      std::size_t length;   // page-aligned length
      at::Tensor bytes;
    };
    std::vector<Item> items;
    std::vector<Item> device_items;  // bytes: device memory, base/start/length unused
    for (const auto& [key, location] : keys) {
      const detail::ZipRecord* record = index_.find("data/" + key);
      if (record == nullptr || record->method != 0 || record->size == 0) continue;  // storage_for reports it
      constexpr std::uint64_t kPage = 4096;
      const std::uint64_t start = record->payload_offset / kPage * kPage;
      const std::uint64_t end = (record->payload_offset + record->size + kPage - 1) / kPage * kPage;
      // Transparent huge pages: a fresh tensor's pages are faulted in 2 MiB
      // at a time during the read instead of 4 KiB at a time.
      const std::size_t length = static_cast<std::size_t>(end - start);
      Item item{record, key, nullptr, start, length, {}};
      if (goes_to_gpu(location)) {
#if CKPTW_HAVE_CUDA
        const c10::Device device = options_.map_location ? *options_.map_location : c10::Device(location);
        item.bytes = on_device(static_cast<std::int64_t>(record->size), device, key);
        device_items.push_back(std::move(item));
#endif
        continue;  // without CUDA, storage_for reports that the device cannot be had
      }
      void* base = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (base == MAP_FAILED) throw Error("out of memory for storage data/" + key, file_.path(), "", ENOMEM);
      detail::advise_huge_pages(base, length);
      item.base = static_cast<unsigned char*>(base);
      item.bytes = at::from_blob(item.base + (record->payload_offset - start),
                                 {static_cast<std::int64_t>(record->size)}, [base, length](void*) { ::munmap(base, length); },
                                 at::TensorOptions().dtype(at::kByte));
      items.push_back(std::move(item));
    }
    std::sort(items.begin(), items.end(),
              [](const Item& a, const Item& b) { return a.record->payload_offset < b.record->payload_offset; });

    // Reads go through the writer's I/O backends (io_uring with several
    // chunks in flight, or POSIX), O_DIRECT where the filesystem allows it.
    std::unique_ptr<detail::IoBackend> io = detail::make_backend(options_.io_backend, 4);
    int direct_fd = -1;
    bool direct = false;
    if (io->open_for_read(file_.path(), true, &direct_fd, &direct) < 0 || !direct) {
      if (direct_fd >= 0) (void)io->close(direct_fd);
      direct_fd = -1;
    }
    struct CloseDirect {
      detail::IoBackend& io;
      int& fd;
      ~CloseDirect() {
        if (fd >= 0) (void)io.close(fd);
      }
    } close_direct{*io, direct_fd};
    // One thread at a time: the I/O thread while it runs, then the GPU uploads.
    const detail::ReadAt read_at = [&](void* data, std::size_t size, std::uint64_t offset, std::size_t min_size) {
      while (true) {
        const long n = io->read_at(direct_fd >= 0 ? direct_fd : fd, data, size, offset, min_size);
        // -EIO: the file ends inside a record. -EINVAL: the filesystem refuses
        // O_DIRECT reads; -EFAULT: the destination is memory O_DIRECT cannot
        // pin (pinned chunks that a driver maps VM_IO). Both are read again
        // through the page cache.
        if ((n != -EINVAL && n != -EFAULT) || direct_fd < 0) return n;
        (void)io->close(direct_fd);
        direct_fd = -1;
      }
    };
    std::mutex mutex;
    std::condition_variable progress;
    std::size_t done = 0;
    std::size_t populated = 0;
    int io_error = 0;
    bool stop = false;
    // Fresh memory must be zeroed by the kernel on first touch, which costs
    // as much as the read itself: a second thread faults each record's pages
    // in ahead of the reads, so zeroing and disk transfer overlap instead of
    // adding up inside every pread.
    std::thread populate([&] {
      for (std::size_t i = 0; i < items.size(); ++i) {
        {
          std::lock_guard<std::mutex> lock(mutex);
          if (stop) return;
        }
        populate_for_write(items[i].base, items[i].length);
        std::lock_guard<std::mutex> lock(mutex);
        populated = i + 1;
        progress.notify_all();
      }
    });
    std::thread reader([&] {
      for (std::size_t i = 0; i < items.size(); ++i) {
        {
          std::unique_lock<std::mutex> lock(mutex);
          progress.wait(lock, [&] { return stop || populated > i; });
          if (stop) return;
        }
        const Item& item = items[i];
        const std::uint64_t needed = item.record->payload_offset + item.record->size - item.start;
        const long n = read_at(item.base, item.length, item.start, needed);
        std::lock_guard<std::mutex> lock(mutex);
        if (n < 0) {
          io_error = static_cast<int>(-n);
          progress.notify_all();
          return;
        }
        done = i + 1;
        progress.notify_all();
      }
    });
    auto finish = [&] {
      {
        std::lock_guard<std::mutex> lock(mutex);
        stop = true;
      }
      progress.notify_all();
      populate.join();
      reader.join();
    };
    try {
      for (std::size_t i = 0; i < items.size(); ++i) {
        {
          std::unique_lock<std::mutex> lock(mutex);
          progress.wait(lock, [&] { return done > i || io_error != 0; });
          if (done <= i) throw IoError("read failed", file_.path(), "", io_error);
        }
        const Item& item = items[i];
        if (options_.verify_crc) {
          check_crc(item.key, *item.record, detail::crc32_update(0, item.bytes.data_ptr(), item.record->size));
        }
        prefetched_.emplace(item.key, item.bytes);
      }
    } catch (...) {
      finish();
      throw;
    }
    finish();
    upload(device_items, read_at);
  }

 private:
#if CKPTW_HAVE_CUDA
  // `bytes` of uninitialised memory on `device`, for storage `key`.
  at::Tensor on_device(std::int64_t bytes, const c10::Device& device, const std::string& key) const {
    try {
      return at::empty({bytes}, at::TensorOptions().dtype(at::kByte).device(device));
    } catch (const c10::Error& e) {
      throw Error("cannot place storage data/" + key + " on " + device.str() + ": " + e.what_without_backtrace(),
                  file_.path());
    }
  }
#endif

  // Fills each item's device memory from the file, one device at a time, and
  // checks its CRC. The copies wait for the work torch queued earlier on the
  // device's current stream: the caching allocator hands out blocks that
  // stream's kernels may still be using.
  template <typename Item>
  void upload(std::vector<Item>& device_items, const detail::ReadAt& read_at) {
#if CKPTW_HAVE_CUDA
    std::map<int, std::vector<Item*>> by_device;
    for (Item& item : device_items) by_device[item.bytes.device().index()].push_back(&item);
    for (auto& [device, on] : by_device) {
      std::sort(on.begin(), on.end(),
                [](const Item* a, const Item* b) { return a->record->payload_offset < b->record->payload_offset; });
      std::vector<detail::UploadRecord> records;
      for (const Item* item : on) records.push_back({item->record->payload_offset, item->record->size, item->bytes.data_ptr()});
      const c10::Device d(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(device));
      // Outlives the event: see stage_records.cpp (c10::Event restores the
      // previous device with a plain set-device).
      const c10::DeviceGuard on_device(d);
      c10::Event ready(c10::DeviceType::CUDA);
      ready.record(c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getStream(d));
      detail::UploadOptions upload_options;
      upload_options.crc = options_.verify_crc;
      upload_options.after = ready.eventId();
      detail::upload_to_device(detail::cuda::device_runtime(), device, file_.path(), read_at, records, upload_options);
      for (std::size_t i = 0; i < on.size(); ++i) {
        check_crc(on[i]->key, *on[i]->record, records[i].crc32);
        prefetched_.emplace(on[i]->key, on[i]->bytes);
      }
    }
#else
    (void)device_items;
    (void)read_at;
#endif
  }

  void check_crc(const std::string& key, const detail::ZipRecord& record, std::uint32_t crc,
                 const std::string& key_path = {}) const {
    check_crc_of_record("data/" + key, record, crc, key_path);
  }

  void check_crc_of_record(const std::string& name, const detail::ZipRecord& record, std::uint32_t crc,
                           const std::string& key_path = {}) const {
    if (options_.verify_crc && crc != record.crc32) {
      throw FormatError("CRC-32 mismatch in record " + name + " at offset " + std::to_string(record.payload_offset) +
                            (record.crc32 == 0 ? detail::kNoCrcRecordedHint : ""),
                        file_.path(), key_path);
    }
  }

  // Faults in [base, base + length) writable (MADV_POPULATE_WRITE, Linux
  // 5.14+; touching every page elsewhere).
  static void populate_for_write(unsigned char* base, std::size_t length) {
#ifndef MADV_POPULATE_WRITE
    constexpr int MADV_POPULATE_WRITE = 23;
#endif
    if (::madvise(base, length, MADV_POPULATE_WRITE) == 0) return;
    for (std::size_t off = 0; off < length; off += 4096) base[off] = 0;
  }

  // Whether a storage recorded at `location` is loaded onto a GPU.
  bool goes_to_gpu(const std::string& location) const {
    if (swap_bytes_) return false;  // swapped on the host first, then placed by storage_for()
    if (options_.map_location) return options_.map_location->is_cuda();
    try {
      return c10::Device(location).is_cuda();
    } catch (const c10::Error&) {
      return false;  // storage_for() reports the bad location
    }
  }

  // Storage key -> the location the file records for it.
  void collect_storage_keys(const PickleValuePtr& v, std::map<std::string, std::string>& keys, std::size_t depth) const {
    if (depth > detail::kMaxPickleDepth) throw FormatError("containers nested too deeply (or cyclic)", file_.path());
    if (v->kind == Kind::kTensor) keys.emplace(v->tensor.storage_key, v->tensor.location);
    for (const auto& item : v->items) collect_storage_keys(item, keys, depth + 1);
    for (const auto& [key, value] : v->entries) collect_storage_keys(value, keys, depth + 1);
  }

  c10::Storage storage_for(const detail::PickledTensor& t, const std::string& key_path) {
    if (auto it = storages_.find(t.storage_key); it != storages_.end()) {
      if (it->second.nbytes() != t.storage_nbytes) {
        throw FormatError("storage " + t.storage_key + " is used with two different sizes", file_.path(), key_path);
      }
      return it->second;
    }
    const detail::ZipRecord* record = index_.find("data/" + t.storage_key);
    if (record == nullptr) {
      throw FormatError("storage record data/" + t.storage_key + " is missing", file_.path(), key_path);
    }
    if (record->method != 0) {
      throw FormatError("storage record data/" + t.storage_key + " is compressed", file_.path(), key_path);
    }
    if (record->size != t.storage_nbytes) {
      throw FormatError("storage record data/" + t.storage_key + " holds " + std::to_string(record->size) +
                            " bytes, the tensor's storage needs " + std::to_string(t.storage_nbytes),
                        file_.path(), key_path);
    }
    at::Tensor bytes;
    if (auto pre = prefetched_.find(t.storage_key); pre != prefetched_.end()) {
      bytes = pre->second;  // read and CRC-checked by prefetch()
    } else {
      bytes = at::empty({static_cast<std::int64_t>(record->size)}, at::kByte);
      file_.read(record->payload_offset, bytes.data_ptr(), record->size);
    }
    if (options_.verify_crc && !prefetched_.count(t.storage_key)) {
      check_crc(t.storage_key, *record, detail::crc32_update(0, bytes.data_ptr(), record->size), key_path);
    }
    if (swap_bytes_) swap_to_native(t, bytes, key_path);
    c10::Device device = options_.map_location ? *options_.map_location : location_device(t.location, key_path);
    if (!device.is_cpu()) {
      try {
        bytes = bytes.to(device);
      } catch (const c10::Error& e) {
        throw Error("cannot place storage on " + device.str() + ": " + e.what_without_backtrace(), file_.path(),
                    key_path);
      }
    }
    c10::Storage storage = bytes.storage();
    storages_.emplace(t.storage_key, storage);
    return storage;
  }

  // Whether the file's storages hold big-endian data: its `byteorder`
  // record, or ReadOptions::default_byte_order without one (torch._load).
  bool data_is_big_endian() const {
    const detail::ZipRecord* record = index_.find("byteorder");
    if (record == nullptr) return options_.default_byte_order == ByteOrder::kBig;
    if (record->size > 16) throw FormatError("malformed byteorder record", file_.path());
    const std::string order = file_.read(record->payload_offset, record->size);
    if (options_.verify_crc) {
      check_crc_of_record("byteorder", *record, detail::crc32_update(0, order.data(), order.size()));
    }
    if (order == "little") return false;
    if (order == "big") return true;
    throw FormatError("unknown byte order '" + order + "' in the byteorder record", file_.path());
  }

  // Byte-swaps a big-endian storage in place, as torch.load does
  // (UntypedStorage.byteswap in units of the persistent id's dtype).
  void swap_to_native(const detail::PickledTensor& t, at::Tensor& bytes, const std::string& key_path) const {
    if (t.untyped_storage && t.element_size > 1) {
      throw FormatError("storage data/" + t.storage_key + " of this big-endian file holds " + t.dtype +
                            " values in an UntypedStorage, which torch.load does not byte-swap (it returns the "
                            "big-endian bytes as they are); ckptw refuses rather than return either",
                        file_.path(), key_path);
    }
    detail::swap_byte_order(static_cast<unsigned char*>(bytes.data_ptr()), bytes.numel(), t.swap_unit);
  }

  c10::Device location_device(const std::string& location, const std::string& key_path) const {
    try {
      return c10::Device(location);
    } catch (const c10::Error&) {
      throw FormatError("unknown storage location '" + location + "'", file_.path(), key_path);
    }
  }

  const detail::ByteSource& file_;
  detail::ZipIndex index_;
  const ReadOptions& options_;
  std::unordered_map<std::string, c10::Storage> storages_;
  std::unordered_map<std::string, at::Tensor> prefetched_;  // verified host bytes by storage key
  std::unordered_map<PickleValuePtr, Value::Ptr> values_;    // made so far, by pickled object
  const bool swap_bytes_;  // the storages hold big-endian data
};

struct TemplateWalk {
  Loader& loader;
  const std::string& path;
  ReadResult& result;

  // Fills `out` from `file_value` as `tmpl` asks.
  c10::IValue apply(const c10::IValue& tmpl, const PickleValuePtr& file_value, const std::string& key_path) {
    if (tmpl.isNone()) return loader.materialize(file_value, key_path);
    if (tmpl.isTensor() && tmpl.toTensor().defined()) {
      if (file_value->kind != Kind::kTensor) {
        throw FormatError("the template has a tensor where the file has no tensor", path, key_path);
      }
      at::Tensor target = tmpl.toTensor();
      at::Tensor loaded = loader.tensor(file_value->tensor, key_path);
      if (target.sizes() != loaded.sizes() || target.scalar_type() != loaded.scalar_type()) {
        throw FormatError("template tensor " + std::string(c10::toString(target.scalar_type())) +
                              c10::str(target.sizes()) + " does not match the file's " +
                              c10::toString(loaded.scalar_type()) + c10::str(loaded.sizes()),
                          path, key_path);
      }
      c10::NoGradGuard no_grad;
      target.copy_(loaded);
      return tmpl;
    }
    if (tmpl.isGenericDict() && file_value->kind == Kind::kDict) return dict(tmpl.toGenericDict(), file_value, key_path);
    if (tmpl.isList() && file_value->kind == Kind::kList) {
      auto tmpl_items = tmpl.toListRef();
      c10::impl::GenericList out(c10::AnyType::get());
      for (std::size_t i = 0; i < tmpl_items.size(); ++i) {
        const std::string item_path = item_key_path(key_path, i);
        if (i >= file_value->items.size()) {
          result.missing_keys.push_back(item_path);
          out.push_back(tmpl_items[i]);
          continue;
        }
        out.push_back(apply(tmpl_items[i], file_value->items[i], item_path));
      }
      return c10::IValue(out);
    }
    return loader.materialize(file_value, key_path);
  }

  c10::impl::GenericDict dict(const c10::impl::GenericDict& tmpl, const PickleValuePtr& file_dict,
                              const std::string& key_path) {
    std::map<std::string, PickleValuePtr> by_key;
    for (const auto& [key, value] : file_dict->entries) by_key[key_text(key)] = value;
    c10::impl::GenericDict out(tmpl.keyType(), c10::AnyType::get());
    for (const auto& entry : tmpl) {
      const std::string key = entry.key().isString() ? entry.key().toStringRef()
                              : entry.key().isInt()  ? std::to_string(entry.key().toInt())
                                                     : "<key>";
      const std::string child = child_key_path(key_path, key);
      auto it = by_key.find(key);
      if (it == by_key.end()) {
        result.missing_keys.push_back(child);
        out.insert_or_assign(entry.key(), entry.value());
        continue;
      }
      out.insert_or_assign(entry.key(), apply(entry.value(), it->second, child));
      by_key.erase(it);
    }
    for (const auto& [key, value] : by_key) result.unexpected_keys.push_back(child_key_path(key_path, key));
    return out;
  }
};

void check_against_manifest(const std::string& dir, int rank, const detail::ByteSource& file,
                            const detail::ZipIndex& index, bool require_manifest) {
  std::optional<detail::Manifest> manifest = detail::read_manifest(dir);
  if (!manifest) {
    if (!require_manifest) return;
    throw FormatError("checkpoint is not committed: " + std::string(kManifestFileName) +
                          " is missing (pass ReadOptions::require_manifest = false to read it anyway)",
                      dir);
  }
  if (rank >= manifest->world_size) {
    throw FormatError("the manifest is for " + std::to_string(manifest->world_size) + " ranks; this is rank " +
                          std::to_string(rank),
                      dir + "/" + kManifestFileName);
  }
  detail::check_against_manifest_entry(file, index, manifest->files[rank]);
}

// data.pkl's object tree, once the version record says this reader knows the format.
std::unique_ptr<detail::PickleTree> read_tree(const detail::ByteSource& file, const detail::ZipIndex& index,
                                              const ReadOptions& options) {
  const std::string& path = file.path();
  const detail::ZipRecord* version = index.find("version");
  if (version == nullptr) version = index.find(".data/version");
  if (version == nullptr) throw FormatError("no version record", path);
  if (version->size == 0 || version->size > 32) throw FormatError("malformed version record", path);
  const std::string version_text = file.read(version->payload_offset, version->size);
  const long number = std::strtol(version_text.c_str(), nullptr, 10);
  if (number < 1 || number > 10) throw FormatError("unsupported format version '" + version_text + "'", path);
  return detail::read_pickle(detail::read_data_pkl(file, index, options.verify_crc), path);
}

Value::Ptr load_value(const detail::ByteSource& file, const ReadOptions& options, detail::ZipIndex index) {
  std::unique_ptr<detail::PickleTree> tree = read_tree(file, index, options);
  Loader loader(file, std::move(index), options);
  if (const auto* on_disk = dynamic_cast<const detail::RandomAccessFile*>(&file)) loader.prefetch(tree->root, on_disk->fd());
  return loader.value(tree->root, "");
}

ReadResult load(const detail::ByteSource& file, const std::optional<StateDict>& tmpl, const ReadOptions& options,
                detail::ZipIndex index) {
  const std::string& path = file.path();
  std::unique_ptr<detail::PickleTree> tree = read_tree(file, index, options);
  const PickleValuePtr root = tree->root;
  if (root->kind != Kind::kDict) throw FormatError("the top-level object is not a dict", path);
  for (const auto& [key, value] : root->entries) {
    if (key->kind != Kind::kString) throw FormatError("top-level keys must be strings", path);
  }

  Loader loader(file, std::move(index), options);
  ReadResult result;
  c10::impl::GenericDict loaded = [&] {
    if (!tmpl) {
      if (const auto* on_disk = dynamic_cast<const detail::RandomAccessFile*>(&file)) loader.prefetch(root, on_disk->fd());
      return loader.materialize(root, "").toGenericDict();
    }
    c10::impl::GenericDict as_generic = c10::impl::toGenericDict(*tmpl);
    TemplateWalk walk{loader, path, result};
    return walk.dict(as_generic, root, "");
  }();
  result.state_dict = c10::impl::toTypedDict<std::string, c10::IValue>(loaded);
  if (options.strict && !result.missing_keys.empty()) {
    std::string list;
    for (const auto& k : result.missing_keys) list += (list.empty() ? "" : ", ") + k;
    throw FormatError("checkpoint is missing keys: [" + list + "]", path);
  }
  return result;
}

}  // namespace

CheckpointReader::CheckpointReader(RankInfo rank_info) : rank_info_(std::move(rank_info)) {}
CheckpointReader::~CheckpointReader() = default;
CheckpointReader::CheckpointReader(CheckpointReader&&) noexcept = default;
CheckpointReader& CheckpointReader::operator=(CheckpointReader&&) noexcept = default;

ReadResult CheckpointReader::read(const std::string& path, const std::optional<StateDict>& state_dict_template,
                                  const ReadOptions& options) {
  const std::string file_path = path + "/" + rank_file_name(rank_info_.global_rank);
  detail::RandomAccessFile file(file_path);
  detail::ZipIndex index = detail::read_zip_index(file);
  check_against_manifest(path, rank_info_.global_rank, file, index, options.require_manifest);
  return load(file, state_dict_template, options, std::move(index));
}

Value::Ptr CheckpointReader::read_value(const std::string& path, const ReadOptions& options) {
  const std::string file_path = path + "/" + rank_file_name(rank_info_.global_rank);
  detail::RandomAccessFile file(file_path);
  detail::ZipIndex index = detail::read_zip_index(file);
  check_against_manifest(path, rank_info_.global_rank, file, index, options.require_manifest);
  return load_value(file, options, std::move(index));
}

Value::Ptr CheckpointReader::read_file_value(const std::string& file_path, const ReadOptions& options) {
  detail::RandomAccessFile file(file_path);
  return load_value(file, options, detail::read_zip_index(file));
}

ReadResult CheckpointReader::read_file(const std::string& file_path,
                                       const std::optional<StateDict>& state_dict_template,
                                       const ReadOptions& options) {
  detail::RandomAccessFile file(file_path);
  return load(file, state_dict_template, options, detail::read_zip_index(file));
}

}  // namespace ckptw
