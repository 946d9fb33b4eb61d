// pybind11 entry point of pyfastent._C: one init_<area>(m) per binding area.
// Pointers and the stream arrive as Python integers; Python checks shapes,
// dtypes and devices and allocates every output.
#include <pybind11/pybind11.h>

#include "device.h"
#include "gram.h"
#include "logdet.h"

namespace py = pybind11;

namespace {

void init_device(py::module_& m) {
  py::register_exception<pyfastent::CudaError>(m, "CudaError", PyExc_RuntimeError);
  m.def("device_count", &pyfastent::device_count,
        "Number of usable CUDA devices (0 without a driver or device).");
  m.def("runtime_version", &pyfastent::runtime_version,
        "CUDA runtime version linked into the extension (13000 = 13.0).");
  m.def("driver_version", &pyfastent::driver_version,
        "CUDA version the installed driver supports, 0 without a driver.");
  m.def("device_name", &pyfastent::device_name, py::arg("index"),
        "Name and compute capability of a device.");
  m.def(
      "set_device", [](int index) { pyfastent::set_device(index, "set_device"); }, py::arg("index"),
      "Make `index` the current device; raises CudaError if it is invalid.");
}

void init_gram(py::module_& m) {
  using pyfastent::GramInput;
  py::class_<GramInput>(m, "GramInput", "A [batch, rows, depth] strided view with an on-load transform.")
      .def(py::init<>())
      .def_readwrite("x", &GramInput::x)
      .def_readwrite("batch", &GramInput::batch)
      .def_readwrite("rows", &GramInput::rows)
      .def_readwrite("depth", &GramInput::depth)
      .def_readwrite("stride_b", &GramInput::stride_b)
      .def_readwrite("stride_r", &GramInput::stride_r)
      .def_readwrite("stride_k", &GramInput::stride_k)
      .def_readwrite("row_offset", &GramInput::row_offset)
      .def_readwrite("k_offset", &GramInput::k_offset)
      .def_readwrite("k_scale", &GramInput::k_scale)
      .def_readwrite("row_scale", &GramInput::row_scale)
      .def_readwrite("is_double", &GramInput::is_double);
  m.attr("GRAM_SQDIST") = static_cast<int>(pyfastent::kSqDist);
  m.attr("GRAM_RBF") = static_cast<int>(pyfastent::kRbf);
  m.attr("GRAM_LINEAR") = static_cast<int>(pyfastent::kLinear);
  m.attr("GRAM_SCALED") = static_cast<int>(pyfastent::kScaled);
  m.attr("MAX_BATCH") = pyfastent::kMaxGridY;
  m.def("gram_row_norms", &pyfastent::gram_row_norms, py::arg("input"), py::arg("norms"), py::arg("stream"));
  m.def("gram", &pyfastent::gram, py::arg("input"), py::arg("norms"), py::arg("mode"), py::arg("param"),
        py::arg("scale"), py::arg("out"), py::arg("stream"));
  m.def("hadamard_normalized", &pyfastent::hadamard_normalized, py::arg("a"), py::arg("b"), py::arg("c"),
        py::arg("n"), py::arg("inv_trace"), py::arg("is_double"), py::arg("out"), py::arg("stream"));
  m.def("rbf_alpha2_sums", &pyfastent::rbf_alpha2_sums, py::arg("a"), py::arg("norms_a"),
        py::arg("neg_half_inv_var_a"), py::arg("b"), py::arg("norms_b"), py::arg("neg_half_inv_var_b"),
        py::arg("b_codes"), py::arg("sums"), py::arg("stream"));
}

void init_logdet(py::module_& m) {
  m.attr("SMALL_CHOLESKY") = pyfastent::kSmallCholesky;
  m.def("cholesky_logdet", &pyfastent::cholesky_logdet, py::arg("matrices"), py::arg("batch"), py::arg("n"),
        py::arg("stride_b"), py::arg("stride_r"), py::arg("stride_c"), py::arg("is_double"), py::arg("logdet"),
        py::arg("info"), py::arg("stream"));
  m.def("joint_logdets", &pyfastent::joint_logdets, py::arg("c"), py::arg("d"), py::arg("is_double"),
        py::arg("coef"), py::arg("index"), py::arg("size"), py::arg("joints"), py::arg("width"),
        py::arg("logdet"), py::arg("info"), py::arg("stream"));
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "pyfastent native CUDA extension";
  m.attr("__version__") = PYFASTENT_VERSION;
  init_device(m);
  init_gram(m);
  init_logdet(m);
}
