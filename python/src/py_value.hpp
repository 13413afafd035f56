// Python objects <-> ckptw::Value, the one input of ckptw's encoder and what
// its reader returns. Both directions run with the GIL held.
#pragma once

#include <string>

#include <torch/csrc/utils/pybind.h>

#include "ckptw/value.hpp"

namespace ckptw::python {

/// _C.StreamedTensor: a tensor whose bytes a Python callable produces while
/// ckptw writes the file; to_value() gives its Value::streamed_tensor.
struct StreamedTensor {
  Value::Ptr value;
};

/// The Value torch.save would pickle for `obj`: one Value per Python object
/// (by id(), so shared objects stay shared and equal ones stay distinct, as
/// the pickler's memo has it), for exactly the types torch.load's weights-only
/// mode accepts (None, bool, int, float, complex, str, bytes, bytearray,
/// tensors, nn.Parameter, list, tuple, set, dict, OrderedDict with its
/// attributes, Counter, torch.Size, torch.dtype, torch.device), and
/// StreamedTensor (a CPU tensor to torch.load). Anything else
/// (subclasses included: a numpy.float64 is not a float here) and cycles are a
/// ckptw::FormatError naming the key path and the type.
Value::Ptr to_value(pybind11::handle obj);

/// The Python object of `value`, as torch.load builds it; a Value reached
/// twice gives the same object.
pybind11::object to_python(const Value::Ptr& value);

/// "module.QualName" of `obj`'s type, for messages.
std::string type_name(pybind11::handle obj);

}  // namespace ckptw::python
