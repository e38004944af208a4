// AVX-512F build of the 2-D attractive t-SNE forces (compiled with -mavx512f).
#define FASTRL_ISA_NS isa_avx512
#define FASTRL_VBYTES 64
#include "tsne_attr_impl.h"
