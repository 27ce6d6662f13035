#pragma once
#include <stddef.h>
#include <stdint.h>

/// Small checksum kernels used by the Swift `Hashing` module.
///
/// All `*_update` functions follow zlib's `crc32()` convention: they take the CRC
/// value of the bytes seen so far (0 for no bytes) and return the CRC value of
/// those bytes followed by `data[0..<len]`. Pre- and post-inversion are handled
/// inside, so the value passed around is always the finished, standard CRC.

#ifdef __cplusplus
extern "C" {
#endif

/// CRC-32C (Castagnoli, reflected poly 0x82F63B78, init ~0, xorout ~0).
/// Uses SSE4.2 `crc32` when the CPU has it, a slice-by-8 table otherwise.
uint32_t cc_crc32c_update(uint32_t crc, const void *data, size_t len);

/// CRC-32C computed with the portable table kernel only (for tests).
uint32_t cc_crc32c_update_sw(uint32_t crc, const void *data, size_t len);

/// 1 when `cc_crc32c_update` uses the hardware instruction, else 0.
int cc_crc32c_hardware(void);

/// CRC-32C of A||B from crc(A), crc(B) and the length of B in bytes.
uint32_t cc_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

/// CRC-64/NVME (reflected poly 0x9A6C9329AC4BC9B5, init ~0, xorout ~0), slice-by-8.
uint64_t cc_crc64nvme_update(uint64_t crc, const void *data, size_t len);

/// CRC-64/NVME of A||B from crc(A), crc(B) and the length of B in bytes.
uint64_t cc_crc64nvme_combine(uint64_t crc_a, uint64_t crc_b, uint64_t len_b);

/// CRC-32 (ISO-HDLC, as zlib) of A||B from crc(A), crc(B) and the length of B.
uint32_t cc_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

#ifdef __cplusplus
}
#endif
