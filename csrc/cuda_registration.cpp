// The CUDA half of pcseg's native ops, built as the separate extension pcseg._C_cuda so a
// broken .cu can never break the CPU build. The schemas live in pcseg.cpp (pcseg._C, imported
// first by pcseg/ops/_extension.py); this file only attaches the CUDA kernels to them.
#include <Python.h>
#include <torch/library.h>

#include "ball_query/ball_query.h"
#include "estimate_normals/estimate_normals.h"
#include "farthest_point_sample/farthest_point_sample.h"
#include "gather_points/gather_points.h"
#include "knn/knn.h"
#include "ring_query/ring_query.h"
#include "three_interpolate/three_interpolate.h"
#include "voxelize/voxelize.h"

TORCH_LIBRARY_IMPL(pcseg, CUDA, m) {
  m.impl("farthest_point_sample", &pcseg::farthest_point_sample_cuda);
  m.impl("knn", &pcseg::knn_cuda);
  m.impl("ball_query", &pcseg::ball_query_cuda);
  m.impl("ring_query", &pcseg::ring_query_cuda);
  m.impl("gather_rows", &pcseg::gather_rows_cuda);
  m.impl("gather_rows_backward", &pcseg::gather_rows_backward_cuda);
  m.impl("three_interpolate", &pcseg::three_interpolate_cuda);
  m.impl("three_interpolate_backward", &pcseg::three_interpolate_backward_cuda);
  m.impl("normals_from_neighbors", &pcseg::normals_from_neighbors_cuda);
  m.impl("voxelize", &pcseg::voxelize_cuda);
}

// A bare module: importing pcseg._C_cuda runs the static registration above; everything is
// reached through torch.ops.pcseg.
static struct PyModuleDef pcseg_cuda_module = {PyModuleDef_HEAD_INIT, "_C_cuda", nullptr, -1,
                                               nullptr};
PyMODINIT_FUNC PyInit__C_cuda(void) { return PyModule_Create(&pcseg_cuda_module); }
