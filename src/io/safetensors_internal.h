/* What the safetensors reader (safetensors.c) and writer
 * (safetensors_write.c) share. */
#ifndef ST_IO_SAFETENSORS_INTERNAL_H
#define ST_IO_SAFETENSORS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader/writer assumes a little-endian host"
#endif

/* Bytes of a tensor of `shape` and element size `itemsize`; 0 on overflow or
 * a negative dimension (then *ok = 0). */
uint64_t st_tensor_bytes(const int64_t *shape, int ndim, size_t itemsize, int *ok);

#endif
