// Portable (SSE2) build of the kNN scan kernel.
#define FASTRL_ISA_NS isa_base
#define FASTRL_MR 2
#define FASTRL_VBYTES 16
#define FASTRL_NP 1
#include "knn_tile_impl.h"
