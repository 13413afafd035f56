#include "py_value.hpp"

#include <climits>
#include <unordered_map>
#include <unordered_set>

#include <torch/csrc/Device.h>
#include <torch/csrc/Dtype.h>
#include <torch/csrc/Size.h>
#include <torch/csrc/autograd/python_variable.h>

#include "ckptw/error.hpp"
#include "ckptw/key_path.hpp"

namespace py = pybind11;

namespace ckptw::python {
namespace {

// The Python types the conversions test for by identity, looked up once.
struct Types {
  py::object ordered_dict, counter, parameter, torch_size, torch_dtype, torch_device, streamed_tensor;

  static const Types& get() {
    // Leaked on purpose: destroying Python objects after the interpreter
    // finalized would crash at exit.
    static const Types* types = [] {
      auto* t = new Types;
      py::module_ collections = py::module_::import("collections");
      py::module_ torch = py::module_::import("torch");
      t->ordered_dict = collections.attr("OrderedDict");
      t->counter = collections.attr("Counter");
      t->parameter = py::module_::import("torch.nn.parameter").attr("Parameter");
      t->torch_size = torch.attr("Size");
      t->torch_dtype = torch.attr("dtype");
      t->torch_device = torch.attr("device");
      t->streamed_tensor = py::type::of<StreamedTensor>();
      return t;
    }();
    return *types;
  }
};

// Whether torch's weights-only unpickler allows `obj`'s type as a global (by
// default or through torch.serialization.add_safe_globals): only for the
// message of an object ckptw refuses.
bool weights_only_loads(py::handle obj) {
  try {
    py::module_ unpickler = py::module_::import("torch._weights_only_unpickler");
    py::handle type = reinterpret_cast<PyObject*>(Py_TYPE(obj.ptr()));
    const std::string name = py::str(type.attr("__module__")).cast<std::string>() + "." +
                             py::str(type.attr("__qualname__")).cast<std::string>();
    if (unpickler.attr("_get_allowed_globals")().contains(name)) return true;
    for (py::handle allowed : unpickler.attr("_get_user_allowed_globals")().attr("values")()) {
      if (allowed.is(type)) return true;
    }
  } catch (const py::error_already_set&) {
    // An older torch without these helpers: say nothing about it.
  }
  return false;
}

bool is_type(py::handle obj, const py::object& type) { return Py_TYPE(obj.ptr()) == reinterpret_cast<PyTypeObject*>(type.ptr()); }

using Where = KeyPathTrail;

std::string utf8(py::handle text, const Where& at) {
  Py_ssize_t size = 0;
  const char* data = PyUnicode_AsUTF8AndSize(text.ptr(), &size);
  if (data == nullptr) {
    PyErr_Clear();
    throw FormatError("a str that is not valid Unicode (a lone surrogate) cannot be saved", "", at.key_path());
  }
  return std::string(data, static_cast<std::size_t>(size));
}

// Memoized by id(): the objects stay alive (the root holds them) while
// converting, so an id is never reused for another object meanwhile.
class FromPython {
 public:
  Value::Ptr convert(py::handle obj, const Where& at, std::size_t depth) {
    PyObject* o = obj.ptr();
    // The pickler memoizes neither None, bools, ints nor floats.
    if (o == Py_None) return Value::none();
    if (PyBool_Check(o)) return Value::boolean(o == Py_True);
    if (PyLong_CheckExact(o)) return integer(obj);
    if (PyFloat_CheckExact(o)) return Value::floating(PyFloat_AS_DOUBLE(o));
    if (auto it = seen_.find(o); it != seen_.end()) return it->second;
    Value::Ptr value = make(obj, at, depth);
    seen_.emplace(o, value);
    return value;
  }

 private:
  static Value::Ptr integer(py::handle obj) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(obj.ptr(), &overflow);
    if (!overflow) return Value::integer(v);
    // Little-endian two's complement with room for the sign bit; Value drops
    // redundant sign bytes.
    const std::size_t bits = obj.attr("bit_length")().cast<std::size_t>();
    py::bytes raw = obj.attr("to_bytes")(bits / 8 + 1, "little", py::arg("signed") = true);
    return Value::big_integer(std::string(raw));
  }

  Value::Ptr make(py::handle obj, const Where& at, std::size_t depth) {
    const Types& types = Types::get();
    PyObject* o = obj.ptr();
    if (PyUnicode_CheckExact(o)) return Value::string(utf8(obj, at));
    // Before the tensor check: THPVariable_CheckExact accepts a Parameter too.
    if (is_type(obj, types.parameter)) {
      return Value::parameter(THPVariable_Unpack(o), obj.attr("requires_grad").cast<bool>(),
                              tensor_state(obj, at, depth));
    }
    if (THPVariable_CheckExact(o)) return Value::tensor(THPVariable_Unpack(o), tensor_state(obj, at, depth));
    if (PyComplex_CheckExact(o)) return Value::complex_number(PyComplex_RealAsDouble(o), PyComplex_ImagAsDouble(o));
    if (PyBytes_CheckExact(o)) return Value::bytes(std::string(py::reinterpret_borrow<py::bytes>(obj)));
    if (PyByteArray_CheckExact(o)) {
      return Value::bytearray(std::string(PyByteArray_AS_STRING(o), static_cast<std::size_t>(PyByteArray_GET_SIZE(o))));
    }
    if (is_type(obj, types.torch_size)) {
      std::vector<std::int64_t> dims;
      for (py::handle d : obj) dims.push_back(d.cast<std::int64_t>());
      return Value::size(std::move(dims));
    }
    if (is_type(obj, types.torch_dtype)) {
      std::string name = py::str(obj);  // "torch.float32"
      try {
        return Value::dtype(name.substr(name.find('.') + 1));
      } catch (const UsageError& e) {  // qint8, bits16, ...: torch.save writes them (see save())
        throw FormatError("cannot save " + name + " with ckptw's encoder: " + e.message(), "", at.key_path());
      }
    }
    if (is_type(obj, types.torch_device)) {
      py::object index = obj.attr("index");
      return Value::device(obj.attr("type").cast<std::string>(), index.is_none() ? -1 : index.cast<std::int64_t>());
    }
    if (is_type(obj, types.streamed_tensor)) return obj.cast<const StreamedTensor&>().value;
    const bool container = PyTuple_CheckExact(o) || PyList_CheckExact(o) || PyDict_CheckExact(o) ||
                           PySet_CheckExact(o) || is_type(obj, types.ordered_dict) || is_type(obj, types.counter);
    if (!container) {
      std::string why = "torch.load(weights_only=True) would refuse it";
      if (THPVariable_Check(o)) {
        why = "a tensor subclass; save the plain tensor (t.as_subclass(torch.Tensor))";
      } else if (weights_only_loads(obj)) {
        why = "ckptw does not save it yet, although torch.save does and torch.load(weights_only=True) loads it";
      }
      throw FormatError("cannot save an object of type " + type_name(obj) + ": " + why, "", at.key_path());
    }
    if (depth > Value::kMaxDepth) {
      throw FormatError("containers nested deeper than " + std::to_string(Value::kMaxDepth), "", at.key_path());
    }
    if (!in_progress_.insert(o).second) {
      throw FormatError("a container that contains itself cannot be saved by torch.save's weights-only format", "",
                        at.key_path());
    }
    Value::Ptr value = make_container(obj, at, depth);
    in_progress_.erase(o);
    return value;
  }

  // The Python attributes of a tensor or Parameter as torch.save pickles
  // them (torch._utils._get_obj_state: object.__getstate__ from Python 3.11,
  // which gives None for an empty __dict__), or null when it has none.
  Value::Ptr tensor_state(py::handle tensor, const Where& at, std::size_t depth) {
#if PY_VERSION_HEX >= 0x030B0000
    py::object state = py::reinterpret_steal<py::object>(PyObject_CallMethod(tensor.ptr(), "__getstate__", nullptr));
    if (!state) throw py::error_already_set();
#else
    py::object state = py::module_::import("torch._utils").attr("_get_obj_state")(tensor);
#endif
    if (state.is_none() || (PyDict_CheckExact(state.ptr()) && PyDict_GET_SIZE(state.ptr()) == 0)) return nullptr;
    if (!PyDict_CheckExact(state.ptr())) {
      throw FormatError("a tensor whose pickled state is a " + type_name(state) +
                            " (it has __slots__) cannot be saved by ckptw; torch.save can",
                        "", at.key_path());
    }
    for (py::handle key : state) {
      if (!PyUnicode_CheckExact(key.ptr())) {
        throw FormatError("a tensor attribute named by a " + type_name(key) + " cannot be saved", "", at.key_path());
      }
    }
    return convert(state, at, depth + 1);
  }

  Value::Ptr make_container(py::handle obj, const Where& at, std::size_t depth) {
    const Types& types = Types::get();
    PyObject* o = obj.ptr();
    if (PyDict_CheckExact(o)) return Value::dict(entries(obj, at, depth));
    if (PyList_CheckExact(o)) return Value::list(items(obj, at, depth));
    if (PyTuple_CheckExact(o)) return Value::tuple(items(obj, at, depth));
    if (is_type(obj, types.ordered_dict)) {
      Value::Ptr attributes;
      if (py::hasattr(obj, "__dict__")) {
        py::dict state = obj.attr("__dict__");
        if (!state.empty()) attributes = convert(state, at, depth + 1);
      }
      return Value::ordered_dict(entries(obj, at, depth), attributes);
    }
    if (is_type(obj, types.counter)) return Value::counter(entries(obj, at, depth));
    return Value::set(items(obj, at, depth));
  }

  Value::Items items(py::handle seq, const Where& at, std::size_t depth) {
    Value::Items out;
    std::size_t i = 0;
    for (py::handle item : seq) {
      out.push_back(convert(item, Where{&at, nullptr, i}, depth + 1));
      ++i;
    }
    return out;
  }

  Value::Entries entries(py::handle mapping, const Where& at, std::size_t depth) {
    Value::Entries out;
    PyObject* key = nullptr;
    PyObject* item = nullptr;
    Py_ssize_t pos = 0;
    if (PyDict_CheckExact(mapping.ptr())) {
      out.reserve(static_cast<std::size_t>(PyDict_GET_SIZE(mapping.ptr())));
      while (PyDict_Next(mapping.ptr(), &pos, &key, &item)) add_entry(out, key, item, at, depth);
      return out;
    }
    // OrderedDict and Counter: their own iteration order (an OrderedDict may
    // have been reordered with move_to_end).
    for (py::handle k : mapping) add_entry(out, k.ptr(), mapping[k].ptr(), at, depth);
    return out;
  }

  void add_entry(Value::Entries& out, PyObject* key, PyObject* item, const Where& at, std::size_t depth) {
    Value::Ptr k = convert(key, at, depth + 1);  // the planner checks the key's type
    out.emplace_back(k, convert(item, Where{&at, k.get(), 0}, depth + 1));
  }

  std::unordered_map<PyObject*, Value::Ptr> seen_;
  std::unordered_set<PyObject*> in_progress_;
};

class ToPython {
 public:
  py::object convert(const Value::Ptr& v) {
    if (auto it = seen_.find(v.get()); it != seen_.end()) return it->second;
    py::object out = make(*v);
    seen_.emplace(v.get(), out);
    return out;
  }

 private:
  py::object make(const Value& v) {
    const Types& types = Types::get();
    using Kind = Value::Kind;
    switch (v.kind()) {
      case Kind::kNone: return py::none();
      case Kind::kBool: return py::bool_(v.as_bool());
      case Kind::kInt: return py::int_(v.as_int());
      case Kind::kBigInt: {
        const std::string& raw = v.big_integer_bytes();
        return py::module_::import("builtins").attr("int").attr("from_bytes")(py::bytes(raw), "little",
                                                                              py::arg("signed") = true);
      }
      case Kind::kFloat: return py::float_(v.as_float());
      case Kind::kComplex:
        return py::reinterpret_steal<py::object>(PyComplex_FromDoubles(v.as_complex().first, v.as_complex().second));
      case Kind::kString: return py::str(v.as_string());
      case Kind::kBytes: return py::bytes(v.as_bytes());
      case Kind::kByteArray:
        return py::reinterpret_steal<py::object>(
            PyByteArray_FromStringAndSize(v.as_bytes().data(), static_cast<Py_ssize_t>(v.as_bytes().size())));
      case Kind::kTensor: return set_attributes(py::reinterpret_steal<py::object>(THPVariable_Wrap(v.as_tensor())), v);
      case Kind::kParameter: {
        at::Tensor data = v.as_tensor().detach();
        return set_attributes(
            types.parameter(py::reinterpret_steal<py::object>(THPVariable_Wrap(data)), v.as_tensor().requires_grad()), v);
      }
      case Kind::kList: {
        py::list out;
        for (const auto& item : v.items()) out.append(convert(item));
        return out;
      }
      case Kind::kTuple: {
        py::tuple out(v.items().size());
        for (std::size_t i = 0; i < v.items().size(); ++i) out[i] = convert(v.items()[i]);
        return out;
      }
      case Kind::kSet: {
        py::set out;
        for (const auto& item : v.items()) out.add(convert(item));
        return out;
      }
      case Kind::kDict: return fill(py::dict(), v);
      case Kind::kCounter: return fill(types.counter(), v);
      case Kind::kOrderedDict: {
        return set_attributes(fill(types.ordered_dict(), v), v);
      }
      case Kind::kSize: return types.torch_size(py::cast(v.as_size()));
      case Kind::kDtype: return py::module_::import("torch").attr(v.dtype_name().c_str());
      case Kind::kDevice:
        return v.device_index() < 0 ? types.torch_device(v.device_type())
                                    : types.torch_device(v.device_type(), v.device_index());
    }
    throw Error("unknown Value kind");
  }

  // setattr for each attribute, as torch._utils._set_obj_state does.
  py::object set_attributes(py::object out, const Value& v) {
    if (v.attributes()) {
      for (const auto& [key, item] : v.attributes()->entries()) py::setattr(out, convert(key), convert(item));
    }
    return out;
  }

  py::object fill(py::object mapping, const Value& v) {
    for (const auto& [key, item] : v.entries()) mapping[convert(key)] = convert(item);
    return mapping;
  }

  std::unordered_map<const Value*, py::object> seen_;
};

}  // namespace

std::string type_name(py::handle obj) {
  py::handle type = reinterpret_cast<PyObject*>(Py_TYPE(obj.ptr()));
  const std::string module = py::str(type.attr("__module__"));
  const std::string name = py::str(type.attr("__qualname__"));
  return module == "builtins" ? name : module + "." + name;
}

namespace {

// The conversion makes short-lived Python objects while the state dict's
// objects (100,000 and more) are alive, and the cyclic collector, run every
// few hundred allocations, walks them again each time: about a tenth of
// ckptw.save of 100,000 small tensors (perf, 2026-12-02). Paused for the
// conversion only, which holds the GIL throughout, and restored before the
// write releases it; refcounting still frees every temporary.
class PauseCyclicGc {
 public:
#if PY_VERSION_HEX >= 0x030A0000
  PauseCyclicGc() : was_enabled_(PyGC_Disable() == 1) {}
  ~PauseCyclicGc() {
    if (was_enabled_) PyGC_Enable();
  }

 private:
  bool was_enabled_;
#endif
};

}  // namespace

Value::Ptr to_value(py::handle obj) {
  const PauseCyclicGc pause;
  return FromPython().convert(obj, Where{}, 0);
}

py::object to_python(const Value::Ptr& value) { return ToPython().convert(value); }

}  // namespace ckptw::python
