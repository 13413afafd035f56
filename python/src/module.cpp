// ckptw._C: the Python binding of ckptw's C++ library. A front end only: the
// writer, its encoder, the commit protocol and the reader are the library's.
//
// The GIL: Python objects are converted (and hooks and Python barriers
// called) with it held; every write, wait, barrier and read runs with it
// released, so a Python thread keeps running during a save and ckptw's
// background thread can take it to call a hook.
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include <torch/csrc/utils/pybind.h>

#include "ckptw/barriers.hpp"
#include "ckptw/build_info.hpp"
#include "ckptw/checkpoint_reader.hpp"
#include "ckptw/checkpoint_writer.hpp"
#include "ckptw/crc32.hpp"
#include "ckptw/dcp.hpp"
#include "ckptw/error.hpp"
#include "py_value.hpp"

namespace py = pybind11;

namespace ckptw::python {
namespace {

// A Python object that C++ may release on any thread: it takes the GIL to
// drop its reference, and leaks it once the interpreter is gone.
class SharedPyObject {
 public:
  explicit SharedPyObject(py::object obj) : obj_(new py::object(std::move(obj)), release) {}
  const py::object& get() const { return *obj_; }

 private:
  static void release(py::object* obj) {
    if (!Py_IsInitialized()) return;  // finalized: leak rather than crash
    py::gil_scoped_acquire gil;
    delete obj;
  }
  std::shared_ptr<py::object> obj_;
};

// An exception raised by Python code that ckptw called (a hook, a barrier),
// carried through the C++ library and raised again, as itself, at the call
// into ckptw.
class PythonError : public Error {
 public:
  // With the GIL held, from inside the catch of `e`.
  explicit PythonError(const std::string& where, py::error_already_set& e)
      : Error(where + " raised " + std::string(py::str(py::type::handle_of(e.value()).attr("__name__"))) + ": " +
              std::string(py::str(e.value()))),
        exception_(std::make_shared<SharedPyObject>(py::reinterpret_borrow<py::object>(e.value()))) {
    // The traceback travels with the exception object, so raising it again
    // shows where the hook failed.
    if (e.trace()) PyException_SetTraceback(e.value().ptr(), e.trace().ptr());
  }
  const py::object& exception() const { return exception_->get(); }

 private:
  std::shared_ptr<SharedPyObject> exception_;
};

// The bytes of a _C.StreamedTensor: `read(offset, memoryview)` fills the
// view, called with the GIL from the thread that writes the file.
class PythonPayloadSource final : public PayloadSource {
 public:
  explicit PythonPayloadSource(py::object read) : read_(std::move(read)) {}
  void read(std::uint64_t offset, void* out, std::size_t size) override {
    py::gil_scoped_acquire gil;
    py::memoryview view = py::memoryview::from_memory(out, static_cast<py::ssize_t>(size), /*readonly=*/false);
    try {
      read_.get()(offset, view);
    } catch (py::error_already_set& e) {
      release(view);
      throw PythonError("a streamed tensor's read()", e);
    }
    if (!release(view)) {
      throw UsageError("a streamed tensor's read() kept a buffer export of the memoryview it was given; the "
                       "view is over the writer's ring buffer and must not outlive the call");
    }
  }

 private:
  static bool release(const py::memoryview& view) {
    PyObject* done = PyObject_CallMethod(view.ptr(), "release", nullptr);
    if (done == nullptr) {
      PyErr_Clear();
      return false;
    }
    Py_DECREF(done);
    return true;
  }

  SharedPyObject read_;
};

void raise_python(const py::object& exception) {
  py::object tb = exception.attr("__traceback__");
  PyErr_Restore(py::type::handle_of(exception).inc_ref().ptr(), exception.inc_ref().ptr(),
                tb.is_none() ? nullptr : tb.inc_ref().ptr());
}

// What one write passes to Python hooks: the caller's kwargs as the objects
// they are, and the first exception a hook raised (hooks run on ckptw's
// thread for write_async; this is how it reaches the caller).
struct HookContext {
  explicit HookContext(py::dict kwargs) : kwargs(std::move(kwargs)) {}
  SharedPyObject kwargs;
  std::optional<SharedPyObject> error;  // guarded by the GIL
};

// One write's hooks: any object with pre_commit(path, **kwargs) and
// post_commit(path, **kwargs), called with that write's context.
class PyHook final : public WriterHook {
 public:
  PyHook(SharedPyObject hook, std::shared_ptr<HookContext> context)
      : hook_(std::move(hook)), context_(std::move(context)) {}
  void pre_commit(const std::string& path, const HookArgs&) override { call("pre_commit", path); }
  void post_commit(const std::string& path, const HookArgs&) override { call("post_commit", path); }

 private:
  void call(const char* method, const std::string& path) {
    py::gil_scoped_acquire gil;
    try {
      hook_.get().attr(method)(path, **py::dict(context_->kwargs.get()));
    } catch (py::error_already_set& e) {
      PythonError error(std::string(method) + " hook", e);
      if (!context_->error) context_->error.emplace(error.exception());
      throw error;
    }
  }
  SharedPyObject hook_;
  std::shared_ptr<HookContext> context_;
};

// Any object with execute_barrier(): the seed's barrier (no vote). torch's
// DistBarrier calls dist.barrier() on the default group, the trainer's.
class PyBarrier final : public Barrier {
 public:
  explicit PyBarrier(py::object barrier)
      : shares_callers_collectives_(type_name(barrier) ==
                                    "torch.distributed.checkpoint._experimental.barriers.DistBarrier"),
        barrier_(std::move(barrier)) {}
  bool shares_callers_collectives() const override { return shares_callers_collectives_; }
  void execute_barrier() override {
    py::gil_scoped_acquire gil;
    try {
      barrier_.get().attr("execute_barrier")();
    } catch (py::error_already_set& e) {
      throw PythonError("execute_barrier()", e);
    }
  }

 private:
  bool shares_callers_collectives_;
  SharedPyObject barrier_;
};

std::shared_ptr<Barrier> as_barrier(const py::object& obj) {
  if (obj.is_none()) return nullptr;
  if (py::isinstance<Barrier>(obj)) return obj.cast<std::shared_ptr<Barrier>>();
  if (!py::hasattr(obj, "execute_barrier")) {
    throw UsageError("barrier must have an execute_barrier() method (got " + type_name(obj) + ")");
  }
  return std::make_shared<PyBarrier>(obj);
}

std::optional<c10::Device> as_device(const py::object& map_location) {
  if (map_location.is_none()) return std::nullopt;
  if (py::isinstance<py::str>(map_location) || type_name(map_location) == "torch.device") {
    return c10::Device(std::string(py::str(map_location)));
  }
  throw UsageError("map_location must be None, a str or a torch.device (got " + type_name(map_location) +
                   "); a dict or a function is not supported");
}

// The writer, released without the GIL: closing it waits for background
// writes, whose hooks may need the GIL.
class PyWriter {
 public:
  PyWriter(CheckpointWriterConfig config, RankInfo rank_info, const py::object& barrier, py::object hook)
      : writer_(std::make_unique<CheckpointWriter>(config, rank_info, as_barrier(barrier))) {
    if (!hook.is_none()) hook_.emplace(std::move(hook));
  }
  ~PyWriter() {
    py::gil_scoped_release nogil;
    writer_.reset();
  }
  CheckpointWriter& get() { return *writer_; }

  // What a write saves and its hooks; a failed conversion travels to the
  // protocol (WriteRequest::conversion_error) rather than out of the call
  // before the ranks vote.
  WriteRequest request(py::handle obj, const std::shared_ptr<HookContext>& context) const {
    WriteRequest request;
    try {
      request.value = to_value(obj);
    } catch (py::error_already_set& e) {
      request.conversion_error = std::make_exception_ptr(PythonError("converting the state dict", e));
    } catch (const std::exception&) {
      request.conversion_error = std::current_exception();
    }
    if (hook_) request.hook = std::make_shared<PyHook>(*hook_, context);
    return request;
  }

 private:
  std::unique_ptr<CheckpointWriter> writer_;
  std::optional<SharedPyObject> hook_;
};

// A write_async in flight; wait() gives its WriteResult or raises its error.
class PendingWrite {
 public:
  explicit PendingWrite(std::future<WriteResult> future) : future_(std::move(future)) {}
  WriteResult wait() {
    if (!future_.valid()) throw UsageError("wait() called twice on one pending write");
    py::gil_scoped_release nogil;
    return future_.get();
  }

 private:
  std::future<WriteResult> future_;
};

// ckptw.errors, set once at import and never released (the translator may
// run until the interpreter exits).
PyObject* g_errors_module = nullptr;

void translate_errors(std::exception_ptr error) {
  py::handle errors(g_errors_module);
  auto raise = [&](const char* cls, const Error& e) {
    py::object type = errors.attr(cls);
    py::object exc;
    if (std::string(cls) == "IoError" || std::string(cls) == "NotFoundError") {
      // OSError's strerror: what ckptw was doing, then the system's words for errno
      // ("write failed: No space left on device").
      const std::string what =
          e.errno_value() != 0 ? e.message() + ": " + std::strerror(e.errno_value()) : e.message();
      exc = type(e.errno_value(), what, e.path().empty() ? py::object(py::none()) : py::str(e.path()));
    } else {
      exc = type(e.what());
    }
    exc.attr("path") = e.path().empty() ? py::object(py::none()) : py::str(e.path());
    exc.attr("key_path") = e.key_path().empty() ? py::object(py::none()) : py::str(e.key_path());
    exc.attr("ckptw_errno") = e.errno_value();
    PyErr_SetObject(type.ptr(), exc.ptr());
  };
  try {
    std::rethrow_exception(error);
  } catch (const PythonError& e) {
    raise_python(e.exception());
  } catch (const IoError& e) {
    raise(e.errno_value() == ENOENT ? "NotFoundError" : "IoError", e);
  } catch (const UnpicklingError& e) {
    raise("UnpicklingError", e);
  } catch (const FormatError& e) {
    raise("FormatError", e);
  } catch (const UsageError& e) {
    raise("UsageError", e);
  } catch (const CommitAborted& e) {
    raise("CommitAborted", e);
  } catch (const TimeoutError& e) {
    raise("TimeoutError", e);
  } catch (const Error& e) {
    raise("Error", e);
  }
}

// torch.serialization.get_default_load_endianness(), which torch.load applies
// to files without a byteorder record: None (torch's default) reads them as
// little-endian.
ByteOrder default_load_byte_order() {
  py::object order = py::module_::import("torch.serialization").attr("get_default_load_endianness")();
  if (order.is_none()) return ByteOrder::kLittle;
  const std::string name = py::str(order.attr("name"));
  if (name == "LITTLE") return ByteOrder::kLittle;
  if (name == "BIG") return ByteOrder::kBig;
  if (name == "NATIVE") return ByteOrder::kNative;
  throw UsageError("unknown torch.serialization load endianness " + name);
}

ReadOptions read_options(const py::object& map_location, bool strict, bool verify_crc, bool require_manifest,
                         const std::string& io_backend) {
  ReadOptions options;
  options.map_location = as_device(map_location);
  options.strict = strict;
  options.verify_crc = verify_crc;
  options.require_manifest = require_manifest;
  options.io_backend = parse_io_backend_kind(io_backend.c_str());
  options.default_byte_order = default_load_byte_order();
  return options;
}

}  // namespace
}  // namespace ckptw::python

using namespace ckptw;
using namespace ckptw::python;

PYBIND11_MODULE(_C, m) {
  m.doc() = "ckptw's C++ library; use the `ckptw` package, not this module.";
  g_errors_module = py::module_::import("ckptw.errors").release().ptr();
  py::register_exception_translator(&translate_errors);

  m.attr("TORCH_VERSION") = CKPTW_BINDING_TORCH_VERSION;
  m.def("build_info", [] {
    BuildInfo info = ckptw::build_info();
    py::dict out;
    out["ckptw"] = info.ckptw_version;
    out["libtorch"] = info.libtorch_version;
    out["cuda"] = info.cuda_version;
    out["nccl"] = info.nccl_version;
    out["liburing"] = info.liburing_version;
    out["isa-l"] = info.isal_version;
    return out;
  });

  py::class_<RankInfo>(m, "RankInfo")
      .def(py::init<int, int>(), py::arg("global_rank"), py::arg("global_world_size"))
      .def_readwrite("global_rank", &RankInfo::global_rank)
      .def_readwrite("global_world_size", &RankInfo::global_world_size)
      .def_readwrite("local_rank", &RankInfo::local_rank)
      .def_readwrite("master_address", &RankInfo::master_address)
      .def_readwrite("master_port", &RankInfo::master_port)
      .def_static("from_env", &RankInfo::from_env);

  const CheckpointWriterConfig d;
  py::class_<CheckpointWriterConfig>(m, "CheckpointWriterConfig")
      .def(py::init([](int write_barrier_timeout_secs, std::uint32_t storage_alignment, const std::string& io_backend,
                       bool direct_io, std::size_t write_buffer_bytes, unsigned ring_buffers, unsigned queue_depth,
                       bool fsync, bool record_device_as_cpu, std::size_t staging_budget_bytes,
                       unsigned snapshot_sets, bool crc_on_gpu, std::size_t crc_on_gpu_min_bytes,
                       int close_timeout_secs) {
             CheckpointWriterConfig c;
             c.write_barrier_timeout_secs = write_barrier_timeout_secs;
             c.storage_alignment = storage_alignment;
             c.io_backend = parse_io_backend_kind(io_backend.c_str());
             c.direct_io = direct_io;
             c.write_buffer_bytes = write_buffer_bytes;
             c.ring_buffers = ring_buffers;
             c.queue_depth = queue_depth;
             c.fsync = fsync;
             c.record_device_as_cpu = record_device_as_cpu;
             c.staging_budget_bytes = staging_budget_bytes;
             c.snapshot_sets = snapshot_sets;
             c.crc_on_gpu = crc_on_gpu;
             c.crc_on_gpu_min_bytes = crc_on_gpu_min_bytes;
             c.close_timeout_secs = close_timeout_secs;
             return c;
           }),
           py::arg("write_barrier_timeout_secs") = d.write_barrier_timeout_secs,
           py::arg("storage_alignment") = d.storage_alignment, py::arg("io_backend") = to_string(d.io_backend),
           py::arg("direct_io") = d.direct_io, py::arg("write_buffer_bytes") = d.write_buffer_bytes,
           py::arg("ring_buffers") = d.ring_buffers, py::arg("queue_depth") = d.queue_depth,
           py::arg("fsync") = d.fsync, py::arg("record_device_as_cpu") = d.record_device_as_cpu,
           py::arg("staging_budget_bytes") = d.staging_budget_bytes, py::arg("snapshot_sets") = d.snapshot_sets,
           py::arg("crc_on_gpu") = d.crc_on_gpu, py::arg("crc_on_gpu_min_bytes") = d.crc_on_gpu_min_bytes,
           py::arg("close_timeout_secs") = d.close_timeout_secs)
      .def_readwrite("write_barrier_timeout_secs", &CheckpointWriterConfig::write_barrier_timeout_secs)
      .def_readwrite("storage_alignment", &CheckpointWriterConfig::storage_alignment)
      .def_property(
          "io_backend", [](const CheckpointWriterConfig& c) { return std::string(to_string(c.io_backend)); },
          [](CheckpointWriterConfig& c, const std::string& v) { c.io_backend = parse_io_backend_kind(v.c_str()); })
      .def_readwrite("direct_io", &CheckpointWriterConfig::direct_io)
      .def_readwrite("write_buffer_bytes", &CheckpointWriterConfig::write_buffer_bytes)
      .def_readwrite("ring_buffers", &CheckpointWriterConfig::ring_buffers)
      .def_readwrite("queue_depth", &CheckpointWriterConfig::queue_depth)
      .def_readwrite("fsync", &CheckpointWriterConfig::fsync)
      .def_readwrite("record_device_as_cpu", &CheckpointWriterConfig::record_device_as_cpu)
      .def_readwrite("staging_budget_bytes", &CheckpointWriterConfig::staging_budget_bytes)
      .def_readwrite("snapshot_sets", &CheckpointWriterConfig::snapshot_sets)
      .def_readwrite("crc_on_gpu", &CheckpointWriterConfig::crc_on_gpu)
      .def_readwrite("crc_on_gpu_min_bytes", &CheckpointWriterConfig::crc_on_gpu_min_bytes)
      .def_readwrite("close_timeout_secs", &CheckpointWriterConfig::close_timeout_secs);

  py::class_<WriteResult>(m, "WriteResult")
      .def_readonly("file", &WriteResult::file)
      .def_readonly("manifest", &WriteResult::manifest)
      .def_readonly("bytes_written", &WriteResult::bytes_written)
      .def_readonly("tensor_count", &WriteResult::tensor_count)
      .def_readonly("storage_count", &WriteResult::storage_count)
      .def_readonly("io_backend", &WriteResult::io_backend)
      .def_readonly("direct_io", &WriteResult::direct_io)
      .def_readonly("plan_secs", &WriteResult::plan_secs)
      .def_readonly("stage_secs", &WriteResult::stage_secs)
      .def_readonly("write_secs", &WriteResult::write_secs)
      .def_readonly("sync_secs", &WriteResult::sync_secs)
      .def_readonly("plan_cpu_secs", &WriteResult::plan_cpu_secs)
      .def_readonly("write_cpu_secs", &WriteResult::write_cpu_secs)
      .def_readonly("copy_crc_secs", &WriteResult::copy_crc_secs)
      .def_readonly("pre_commit_secs", &WriteResult::pre_commit_secs)
      .def_readonly("barrier_secs", &WriteResult::barrier_secs)
      .def_readonly("post_commit_secs", &WriteResult::post_commit_secs)
      .def_readonly("total_secs", &WriteResult::total_secs);

  py::class_<HookContext, std::shared_ptr<HookContext>>(m, "HookContext")
      .def(py::init([](py::dict kwargs) { return std::make_shared<HookContext>(std::move(kwargs)); }))
      .def_property_readonly("error", [](const HookContext& c) {
        return c.error ? c.error->get() : py::object(py::none());
      });

  py::class_<StreamedTensor>(m, "StreamedTensor")
      .def(py::init([](const at::Tensor& layout, py::object read) {
             return StreamedTensor{
                 Value::streamed_tensor(layout, std::make_shared<PythonPayloadSource>(std::move(read)))};
           }),
           py::arg("layout"), py::arg("read"));

  py::class_<PendingWrite>(m, "PendingWrite").def("wait", &PendingWrite::wait);

  py::class_<PyWriter>(m, "Writer")
      .def(py::init<CheckpointWriterConfig, RankInfo, py::object, py::object>(), py::arg("config"),
           py::arg("rank_info"), py::arg("barrier"), py::arg("commit_hook"))
      .def("write",
           [](PyWriter& w, const std::string& path, py::handle obj, const std::shared_ptr<HookContext>& context) {
             WriteRequest request = w.request(obj, context);
             py::gil_scoped_release nogil;
             return w.get().write(path, request);
           })
      .def("write_async",
           [](PyWriter& w, const std::string& path, py::handle obj, const std::shared_ptr<HookContext>& context) {
             WriteRequest request = w.request(obj, context);
             py::gil_scoped_release nogil;
             return PendingWrite(w.get().write_async(path, request));
           })
      .def("save",
           [](PyWriter& w, const std::string& file, py::handle obj) {
             Value::Ptr value = to_value(obj);
             py::gil_scoped_release nogil;
             return w.get().save(file, value);
           })
      .def("save_segments",
           [](PyWriter& w, const std::string& file, const py::list& segments) {
             // bytes-like objects are raw segments; anything else is saved as an archive.
             std::vector<FileSegment> pieces(segments.size());
             for (std::size_t i = 0; i < pieces.size(); ++i) {
               py::handle segment = segments[i];
               if (PyBytes_Check(segment.ptr()) || PyByteArray_Check(segment.ptr()) ||
                   PyMemoryView_Check(segment.ptr())) {
                 const py::buffer_info bytes = py::reinterpret_borrow<py::buffer>(segment).request();
                 pieces[i].bytes.assign(static_cast<const char*>(bytes.ptr), bytes.size * bytes.itemsize);
               } else {
                 pieces[i].archive = to_value(segment);
               }
             }
             SegmentsWriteResult written;
             {
               py::gil_scoped_release nogil;
               written = w.get().save_segments(file, pieces);
             }
             py::list landed;
             for (const SegmentWritten& segment : written.segments) {
               landed.append(py::make_tuple(segment.offset, segment.length, segment.crc32));
             }
             return py::make_tuple(written.write, landed);
           })
      .def("reserve", [](PyWriter& w, std::size_t bytes) {
        py::gil_scoped_release nogil;
        w.get().reserve(bytes);
      })
      .def("close", [](PyWriter& w) {
        py::gil_scoped_release nogil;
        w.get().close();
      });

  m.def("uncommitted_reason", [](const std::string& dir) {
    py::gil_scoped_release nogil;
    return uncommitted_reason(dir);
  });
  m.def("latest_committed", [](const std::string& root) {
    py::gil_scoped_release nogil;
    return latest_committed(root);
  });
  m.def("rank_file_name", &rank_file_name);
  m.attr("MANIFEST_FILE_NAME") = kManifestFileName;
  m.attr("DCP_CHECKSUMS_FILE_NAME") = kDcpChecksumsFileName;
  m.attr("DCP_CHECKSUMS_SUFFIX") = kDcpChecksumsSuffix;
  // Any contiguous buffer (bytes, a memoryview of a tensor's bytes), read without the GIL.
  m.def(
      "crc32",
      [](const py::object& data, std::uint32_t value) {
        Py_buffer view;
        if (PyObject_GetBuffer(data.ptr(), &view, PyBUF_SIMPLE) != 0) throw py::error_already_set();
        std::uint32_t crc = 0;
        {
          py::gil_scoped_release nogil;
          crc = ckptw::crc32(view.buf, static_cast<std::size_t>(view.len), value);
        }
        PyBuffer_Release(&view);
        return crc;
      },
      py::arg("data"), py::arg("value") = 0);
  m.def("verify_dcp_checkpoint", [](const std::string& dir) {
    py::gil_scoped_release nogil;
    return verify_dcp_checkpoint(dir);
  });
  m.def(
      "read_file",
      [](const std::string& file, const py::object& map_location, bool verify_crc, const std::string& io_backend) {
        ReadOptions options = read_options(map_location, false, verify_crc, false, io_backend);
        Value::Ptr value;
        {
          py::gil_scoped_release nogil;
          value = CheckpointReader(RankInfo()).read_file_value(file, options);
        }
        return to_python(value);
      },
      py::arg("file"), py::arg("map_location"), py::arg("verify_crc"), py::arg("io_backend"));

  m.def(
      "verify_records",
      [](const std::string& file, bool allow_records_without_crc) {
        RecordCheck check;
        {
          py::gil_scoped_release nogil;
          check = verify_records(file, allow_records_without_crc);
        }
        return py::make_tuple(check.records, check.without_crc);
      },
      py::arg("file"), py::arg("allow_records_without_crc"));

  m.def(
      "locate_tensors",
      [](const std::string& file, std::uint64_t offset, std::uint64_t length) {
        std::vector<StoredTensor> located;
        {
          py::gil_scoped_release nogil;
          located = locate_tensors(file, offset, length);
        }
        py::list tensors;
        for (const StoredTensor& t : located) {
          py::dict entry;
          entry["key_path"] = t.key_path;
          entry["dtype"] = t.dtype;
          entry["sizes"] = t.sizes;
          entry["strides"] = t.strides;
          entry["storage_offset"] = t.storage_offset;
          entry["payload_offset"] = t.payload_offset;
          entry["storage_bytes"] = t.storage_bytes;
          tensors.append(entry);
        }
        return tensors;
      },
      py::arg("file"), py::arg("offset") = 0, py::arg("length") = 0);

  m.def(
      "read_checkpoint",
      [](const std::string& path, const RankInfo& rank_info, const py::object& state_dict,
         const py::object& map_location, bool strict, bool verify_crc, bool require_manifest,
         const std::string& io_backend) {
        ReadOptions options = read_options(map_location, strict, verify_crc, require_manifest, io_backend);
        CheckpointReader reader(rank_info);
        if (state_dict.is_none()) {
          Value::Ptr value;
          {
            py::gil_scoped_release nogil;
            value = reader.read_value(path, options);
          }
          return py::make_tuple(to_python(value), py::list()).cast<py::object>();
        }
        c10::IValue template_value = to_ivalue(to_value(state_dict));
        if (!template_value.isGenericDict() || !template_value.toGenericDict().keyType()->cast<c10::StringType>()) {
          throw UsageError("state_dict must be a dict with str keys (got " + type_name(state_dict) + ")", path);
        }
        StateDict state_dict_template = c10::impl::toTypedDict<std::string, c10::IValue>(template_value.toGenericDict());
        ReadResult result;
        {
          py::gil_scoped_release nogil;
          result = reader.read(path, state_dict_template, options);
        }
        return py::make_tuple(to_python(to_value(result.state_dict)), py::cast(result.missing_keys)).cast<py::object>();
      },
      py::arg("path"), py::arg("rank_info"), py::arg("state_dict"), py::arg("map_location"), py::arg("strict"),
      py::arg("verify_crc"), py::arg("require_manifest"), py::arg("io_backend"));

  // Barriers ckptw implements (they vote: all ranks commit or none).
  py::class_<Barrier, std::shared_ptr<Barrier>>(m, "Barrier")
      .def("execute_barrier", [](Barrier& b) {
        py::gil_scoped_release nogil;
        b.execute_barrier();
      });
  py::class_<TcpStoreBarrier, Barrier, std::shared_ptr<TcpStoreBarrier>>(m, "TcpStoreBarrier")
      .def(py::init([](const RankInfo& rank_info, const std::string& prefix, const std::string& master_address,
                       int master_port, int init_timeout_secs, int timeout_secs, const py::object& store) {
             TcpStoreBarrier::Options options;
             options.prefix = prefix;
             options.master_address = master_address;
             options.master_port = master_port;
             options.init_timeout_secs = init_timeout_secs;
             options.timeout_secs = timeout_secs;
             if (store.is_none()) {
               py::gil_scoped_release nogil;
               return std::make_shared<TcpStoreBarrier>(rank_info, options);
             }
             auto c10d_store = store.cast<c10::intrusive_ptr<c10d::Store>>();
             py::gil_scoped_release nogil;
             return std::make_shared<TcpStoreBarrier>(rank_info, c10d_store, options);
           }),
           py::arg("rank_info"), py::arg("prefix"), py::arg("master_address"), py::arg("master_port"),
           py::arg("init_timeout_secs"), py::arg("timeout_secs"), py::arg("store"))
      .def_property_readonly("store", &TcpStoreBarrier::store);
  py::class_<ProcessGroupBarrier, Barrier, std::shared_ptr<ProcessGroupBarrier>>(m, "ProcessGroupBarrier")
      .def(py::init([](const RankInfo& rank_info, const py::object& backend, int timeout_secs, bool dedicated_group) {
             auto c10d_backend = backend.cast<c10::intrusive_ptr<c10d::Backend>>();
             ProcessGroupBarrier::Options options;
             options.timeout = std::chrono::seconds(timeout_secs);
             options.dedicated_group = dedicated_group;
             return std::make_shared<ProcessGroupBarrier>(rank_info, c10d_backend, options);
           }),
           py::arg("rank_info"), py::arg("backend"), py::arg("timeout_secs"), py::arg("dedicated_group"))
      .def_property_readonly("device", [](const ProcessGroupBarrier& b) { return b.device().str(); })
      .def_property_readonly("shares_callers_collectives", &ProcessGroupBarrier::shares_callers_collectives);
  py::class_<NcclBarrier, Barrier, std::shared_ptr<NcclBarrier>>(m, "NcclBarrier")
      .def(py::init([](const RankInfo& rank_info, const std::string& prefix, const std::string& master_address,
                       int master_port, int device, int timeout_secs, const py::object& store) {
             NcclBarrier::Options options;
             options.store.prefix = prefix;
             options.store.master_address = master_address;
             options.store.master_port = master_port;
             options.device = device;
             options.timeout_secs = timeout_secs;
             c10::intrusive_ptr<c10d::Store> c10d_store;
             if (!store.is_none()) c10d_store = store.cast<c10::intrusive_ptr<c10d::Store>>();
             py::gil_scoped_release nogil;
             return std::make_shared<NcclBarrier>(rank_info, options, c10d_store);
           }),
           py::arg("rank_info"), py::arg("prefix"), py::arg("master_address"), py::arg("master_port"),
           py::arg("device"), py::arg("timeout_secs"), py::arg("store"));
}
