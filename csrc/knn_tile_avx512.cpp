// AVX-512F build of the kNN scan kernel (compiled with -mavx512f).
#define FASTRL_ISA_NS isa_avx512
#define FASTRL_MR 8
#define FASTRL_VBYTES 64
#define FASTRL_NP 2
#include "knn_tile_impl.h"
