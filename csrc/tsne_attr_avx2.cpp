// AVX2 + FMA build of the 2-D attractive t-SNE forces (compiled with -mavx2 -mfma).
#define FASTRL_ISA_NS isa_avx2
#define FASTRL_VBYTES 32
#include "tsne_attr_impl.h"
