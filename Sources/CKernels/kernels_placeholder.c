#include "qlm_kernels.h"
