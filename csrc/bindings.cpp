// pybind11 entry point of pyfastent._C: one init_<area>(m) per binding area.
#include <pybind11/pybind11.h>

#include "device.h"

namespace py = pybind11;

namespace {

void init_device(py::module_& m) {
  py::register_exception<pyfastent::CudaError>(m, "CudaError",
                                               PyExc_RuntimeError);
  m.def("device_count", &pyfastent::device_count,
        "Number of usable CUDA devices (0 without a driver or device).");
  m.def("runtime_version", &pyfastent::runtime_version,
        "CUDA runtime version linked into the extension (13000 = 13.0).");
  m.def("driver_version", &pyfastent::driver_version,
        "CUDA version the installed driver supports, 0 without a driver.");
  m.def("device_name", &pyfastent::device_name, py::arg("index"),
        "Name and compute capability of a device.");
  m.def(
      "set_device",
      [](int index) { pyfastent::set_device(index, "set_device"); },
      py::arg("index"),
      "Make `index` the current device; raises CudaError if it is invalid.");
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "pyfastent native CUDA extension";
  m.attr("__version__") = PYFASTENT_VERSION;
  init_device(m);
}
