// The shared library `ckptw` is ckptw_core linked whole; a target needs at
// least one source of its own.
namespace ckptw::detail {
int shared_library_anchor = 0;
}
