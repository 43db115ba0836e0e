#pragma once
/// \file eigen.hpp
/// \brief <Eigen/Core>, with Eigen's matrix-product kernels for float and double declared
/// `extern template`: they are compiled once, in liblorapp (src/detail/eigen_kernels.cpp).
///
/// Eigen defines its GEMM, GEMV, TRMM and TRSM kernels (gebp_kernel, the packing routines,
/// general_matrix_vector_product, ...) as non-inline members of class templates, so every
/// translation unit that multiplies float or double matrices instantiates and optimizes them
/// again: about 4 s of compile time per such translation unit (measured on tests/test_layer.cpp
/// and examples/init_training.cpp, docs/development.md). Declared here, they come from the library
/// instead, compiled at the library's optimization level. As with every inline Eigen function that
/// the library and its users share, both must be compiled for the same instruction set:
/// lora::lora passes its -march on to its users (LORA_NATIVE_ARCH). Defining
/// LORA_NO_EXTERN_TEMPLATES turns these declarations off, as it does for the library's own
/// templates.
///
/// Every public header of LoRA++ includes this one instead of <Eigen/Core>.

#include <Eigen/Core>

#define LORA_EIGEN_PRODUCT_KERNELS(EXTERN, S)                                                     \
  EXTERN template struct gebp_kernel<S, S, Index,                                                 \
                                     blas_data_mapper<S, Index, ColMajor, Unaligned, 1>,          \
                                     gebp_traits<S, S>::mr, gebp_traits<S, S>::nr, false, false>; \
  EXTERN template struct gemm_pack_lhs<S, Index, const_blas_data_mapper<S, Index, ColMajor>,      \
                                       gebp_traits<S, S>::mr, gebp_traits<S, S>::LhsProgress,     \
                                       gebp_traits<S, S>::LhsPacket4Packing, ColMajor>;           \
  EXTERN template struct gemm_pack_lhs<S, Index, const_blas_data_mapper<S, Index, RowMajor>,      \
                                       gebp_traits<S, S>::mr, gebp_traits<S, S>::LhsProgress,     \
                                       gebp_traits<S, S>::LhsPacket4Packing, RowMajor>;           \
  EXTERN template struct gemm_pack_rhs<S, Index, const_blas_data_mapper<S, Index, ColMajor>,      \
                                       gebp_traits<S, S>::nr, ColMajor>;                          \
  EXTERN template struct gemm_pack_rhs<S, Index, const_blas_data_mapper<S, Index, RowMajor>,      \
                                       gebp_traits<S, S>::nr, RowMajor>;                          \
  EXTERN template struct general_matrix_matrix_product<Index, S, ColMajor, false, S, ColMajor,    \
                                                       false, ColMajor, 1>;                       \
  EXTERN template struct general_matrix_matrix_product<Index, S, ColMajor, false, S, RowMajor,    \
                                                       false, ColMajor, 1>;                       \
  EXTERN template struct general_matrix_matrix_product<Index, S, RowMajor, false, S, ColMajor,    \
                                                       false, ColMajor, 1>;                       \
  EXTERN template struct general_matrix_matrix_product<Index, S, RowMajor, false, S, RowMajor,    \
                                                       false, ColMajor, 1>;                       \
  EXTERN template struct general_matrix_vector_product<                                           \
      Index, S, const_blas_data_mapper<S, Index, ColMajor>, ColMajor, false, S,                   \
      const_blas_data_mapper<S, Index, RowMajor>, false, Specialized>;                            \
  EXTERN template struct general_matrix_vector_product<                                           \
      Index, S, const_blas_data_mapper<S, Index, ColMajor>, ColMajor, false, S,                   \
      const_blas_data_mapper<S, Index, ColMajor>, false, Specialized>;                            \
  EXTERN template struct general_matrix_vector_product<                                           \
      Index, S, const_blas_data_mapper<S, Index, RowMajor>, RowMajor, false, S,                   \
      const_blas_data_mapper<S, Index, ColMajor>, false, Specialized>;                            \
  EXTERN template struct general_matrix_vector_product<                                           \
      Index, S, const_blas_data_mapper<S, Index, RowMajor>, RowMajor, false, S,                   \
      const_blas_data_mapper<S, Index, RowMajor>, false, BuiltIn>;                                \
  EXTERN template struct triangular_matrix_vector_product<Index, UnitUpper, S, false, S, false,   \
                                                          RowMajor, Specialized>;                 \
  EXTERN template struct triangular_matrix_vector_product<Index, UnitUpper, S, false, S, false,   \
                                                          ColMajor, Specialized>;                 \
  EXTERN template struct product_triangular_matrix_matrix<S, Index, UnitUpper, true, RowMajor,    \
                                                          false, ColMajor, false, ColMajor, 1>;   \
  EXTERN template struct product_triangular_matrix_matrix<S, Index, UnitLower, true, ColMajor,    \
                                                          false, ColMajor, false, ColMajor, 1>;   \
  EXTERN template struct product_triangular_matrix_matrix<S, Index, Upper, true, RowMajor, false, \
                                                          ColMajor, false, ColMajor, 1>;          \
  EXTERN template struct product_triangular_matrix_matrix<S, Index, Upper, true, ColMajor, false, \
                                                          ColMajor, false, ColMajor, 1>;          \
  EXTERN template struct product_triangular_matrix_matrix<S, Index, Lower, true, ColMajor, false, \
                                                          ColMajor, false, ColMajor, 1>;          \
  EXTERN template struct triangular_solve_matrix<S, Index, OnTheLeft, Upper, false, ColMajor,     \
                                                 ColMajor, 1>;                                    \
  EXTERN template struct triangular_solve_matrix<S, Index, OnTheLeft, Lower, false, RowMajor,     \
                                                 ColMajor, 1>;

#ifndef LORA_NO_EXTERN_TEMPLATES
namespace Eigen::internal {
LORA_EIGEN_PRODUCT_KERNELS(extern, float)
LORA_EIGEN_PRODUCT_KERNELS(extern, double)
}  // namespace Eigen::internal
#endif
