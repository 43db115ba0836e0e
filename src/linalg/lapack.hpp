#pragma once
// Internal: the LAPACK routines liblorapp calls when built with LORA_LAPACK: the divide-and-conquer
// SVD of small matrices and the symmetric eigensolver (OpenBLAS's LAPACK, Fortran interface,
// 32-bit integers as in Debian's libopenblas). Each character argument is
// followed by its hidden length at the end of the argument list, as gfortran passes it (what
// LAPACKE does with LAPACK_FORTRAN_STRLEN_END).

#include <algorithm>
#include <climits>
#include <cstddef>
#include <vector>

#include <Eigen/Core>

#include "lora/error.hpp"

extern "C" {
void sgesdd_(const char* jobz, const int* m, const int* n, float* a, const int* lda, float* s,
             float* u, const int* ldu, float* vt, const int* ldvt, float* work, const int* lwork,
             int* iwork, int* info, std::size_t jobz_len);
void dgesdd_(const char* jobz, const int* m, const int* n, double* a, const int* lda, double* s,
             double* u, const int* ldu, double* vt, const int* ldvt, double* work, const int* lwork,
             int* iwork, int* info, std::size_t jobz_len);
void sgesvd_(const char* jobu, const char* jobvt, const int* m, const int* n, float* a,
             const int* lda, float* s, float* u, const int* ldu, float* vt, const int* ldvt,
             float* work, const int* lwork, int* info, std::size_t jobu_len, std::size_t jobvt_len);
void dgesvd_(const char* jobu, const char* jobvt, const int* m, const int* n, double* a,
             const int* lda, double* s, double* u, const int* ldu, double* vt, const int* ldvt,
             double* work, const int* lwork, int* info, std::size_t jobu_len,
             std::size_t jobvt_len);
void ssyevd_(const char* jobz, const char* uplo, const int* n, float* a, const int* lda, float* w,
             float* work, const int* lwork, int* iwork, const int* liwork, int* info,
             std::size_t jobz_len, std::size_t uplo_len);
void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
             double* work, const int* lwork, int* iwork, const int* liwork, int* info,
             std::size_t jobz_len, std::size_t uplo_len);
}

namespace lora::linalg::lapack {

inline void gesdd(char jobz, int m, int n, float* a, int lda, float* s, float* u, int ldu,
                  float* vt, int ldvt, float* work, int lwork, int* iwork, int* info) {
  sgesdd_(&jobz, &m, &n, a, &lda, s, u, &ldu, vt, &ldvt, work, &lwork, iwork, info, 1);
}
inline void gesdd(char jobz, int m, int n, double* a, int lda, double* s, double* u, int ldu,
                  double* vt, int ldvt, double* work, int lwork, int* iwork, int* info) {
  dgesdd_(&jobz, &m, &n, a, &lda, s, u, &ldu, vt, &ldvt, work, &lwork, iwork, info, 1);
}
inline void gesvd(char job, int m, int n, float* a, int lda, float* s, float* u, int ldu, float* vt,
                  int ldvt, float* work, int lwork, int* info) {
  sgesvd_(&job, &job, &m, &n, a, &lda, s, u, &ldu, vt, &ldvt, work, &lwork, info, 1, 1);
}
inline void gesvd(char job, int m, int n, double* a, int lda, double* s, double* u, int ldu,
                  double* vt, int ldvt, double* work, int lwork, int* info) {
  dgesvd_(&job, &job, &m, &n, a, &lda, s, u, &ldu, vt, &ldvt, work, &lwork, info, 1, 1);
}
inline void syevd(char jobz, int n, float* a, int lda, float* w, float* work, int lwork, int* iwork,
                  int liwork, int* info) {
  const char uplo = 'L';
  ssyevd_(&jobz, &uplo, &n, a, &lda, w, work, &lwork, iwork, &liwork, info, 1, 1);
}
inline void syevd(char jobz, int n, double* a, int lda, double* w, double* work, int lwork,
                  int* iwork, int liwork, int* info) {
  const char uplo = 'L';
  dsyevd_(&jobz, &uplo, &n, a, &lda, w, work, &lwork, iwork, &liwork, info, 1, 1);
}

/// A dimension as LAPACK's 32-bit integer; larger ones throw lora::Error.
inline int dimension(const char* where, Eigen::Index value) {
  if (value > INT_MAX)
    detail::fail(where, "expected dimensions below 2^31 for LAPACK, got {}", value);
  return static_cast<int>(value);
}

/// The workspace size a query returned (as a floating-point number, which rounds above 2^24 in
/// float: rounded up, plus one).
template <typename Scalar>
int workspace(Scalar query) {
  const double size =
      static_cast<double>(query) * (1.0 + 4.0 * Eigen::NumTraits<Scalar>::epsilon());
  return static_cast<int>(std::min<double>(INT_MAX, size + 1.0));
}

}  // namespace lora::linalg::lapack
