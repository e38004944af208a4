// AVX2 + FMA build of the kNN scan kernel (compiled with -mavx2 -mfma).
#define FASTRL_ISA_NS isa_avx2
#define FASTRL_MR 6
#define FASTRL_VBYTES 32
#define FASTRL_NP 1
#include "knn_tile_impl.h"
