// The one place where pcseg's operator schemas are declared. Kernels register themselves
// beside their code: TORCH_LIBRARY_IMPL(pcseg, CPU, m) in each <op>_cpu.cpp, and the CUDA
// ones in cuda_registration.cpp of the separate _C_cuda extension.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(pcseg, m) {
  m.def("farthest_point_sample(Tensor points, Tensor lengths, int num_samples, "
        "Tensor start_index) -> Tensor");
  m.def("knn(Tensor query, Tensor points, Tensor query_lengths, Tensor lengths, int k) "
        "-> (Tensor, Tensor)");
  m.def("ball_query(Tensor query, Tensor points, Tensor query_lengths, Tensor lengths, "
        "float radius, int k) -> (Tensor, Tensor)");
  m.def("ring_query(Tensor query, Tensor points, Tensor normals, Tensor query_lengths, "
        "Tensor lengths, float r_inner, float r_outer, int k) -> (Tensor, Tensor)");
  m.def("gather_rows(Tensor features, Tensor idx) -> Tensor");
  m.def("gather_rows_backward(Tensor grad, Tensor idx, int num_rows) -> Tensor");
  m.def("three_interpolate(Tensor features, Tensor idx, Tensor weight) -> Tensor");
  m.def("three_interpolate_backward(Tensor grad_out, Tensor features, Tensor idx, "
        "Tensor weight) -> (Tensor, Tensor)");
  m.def("normals_from_neighbors(Tensor points, Tensor idx) -> Tensor");
  m.def("voxelize(Tensor points, float voxel_size, Tensor labels, int num_classes, "
        "Tensor values) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}

// A bare module: importing pcseg._C runs the static registrations above; no Python bindings
// are needed because everything is reached through torch.ops.pcseg.
static struct PyModuleDef pcseg_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&pcseg_module); }
