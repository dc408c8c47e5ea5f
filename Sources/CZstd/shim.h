// CZstd: the system libzstd (Debian: libzstd-dev), used for the optional chunked
// zstd encoding of tensors in .qlm files. Nothing is vendored.
#include <zstd.h>
