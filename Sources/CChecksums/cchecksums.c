// Checksum kernels for the Hashing module: CRC-32C (SSE4.2 with a table fallback)
// and CRC-64/NVME (slice-by-8), plus GF(2) "combine" helpers for all three CRCs.
#include "cchecksums.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define CC_X86 1
#else
#define CC_X86 0
#endif

#define CRC32C_POLY 0x82F63B78u
#define CRC32_POLY 0xEDB88320u
#define CRC64NVME_POLY 0x9A6C9329AC4BC9B5ull

static uint32_t crc32c_table[8][256];
static uint64_t crc64_table[8][256];
static uint32_t crc32c_x2n[64];
static uint32_t crc32_x2n[64];
static uint64_t crc64_x2n[64];
static int crc32c_has_hw;

// ---- GF(2) polynomial arithmetic modulo a reflected CRC polynomial ----------
// In the reflected representation bit 31 (bit 63) is x^0. These follow the
// classic "multiply modulo p" construction used to combine CRCs.

static uint32_t mulmod32(uint32_t a, uint32_t b, uint32_t poly) {
    uint32_t m = 1u << 31, p = 0;
    if (a == 0) return 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0) break;
        }
        m >>= 1;
        b = (b & 1) ? (b >> 1) ^ poly : b >> 1;
    }
    return p;
}

static uint64_t mulmod64(uint64_t a, uint64_t b, uint64_t poly) {
    uint64_t m = 1ull << 63, p = 0;
    if (a == 0) return 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0) break;
        }
        m >>= 1;
        b = (b & 1) ? (b >> 1) ^ poly : b >> 1;
    }
    return p;
}

/// x^(n * 2^k) mod p, using the table of x^(2^i).
static uint32_t x2nmod32(uint64_t n, unsigned k, const uint32_t *table, uint32_t poly) {
    uint32_t p = 1u << 31;
    while (n) {
        if (n & 1) p = mulmod32(table[k & 63], p, poly);
        n >>= 1;
        k++;
    }
    return p;
}

static uint64_t x2nmod64(uint64_t n, unsigned k, const uint64_t *table, uint64_t poly) {
    uint64_t p = 1ull << 63;
    while (n) {
        if (n & 1) p = mulmod64(table[k & 63], p, poly);
        n >>= 1;
        k++;
    }
    return p;
}

// ---- table setup (runs once at load time) -----------------------------------

__attribute__((constructor)) static void cc_init_tables(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        uint64_t d = i;
        for (int j = 0; j < 8; j++) {
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
            d = (d & 1) ? (d >> 1) ^ CRC64NVME_POLY : d >> 1;
        }
        crc32c_table[0][i] = c;
        crc64_table[0][i] = d;
    }
    for (int k = 1; k < 8; k++) {
        for (int i = 0; i < 256; i++) {
            uint32_t c = crc32c_table[k - 1][i];
            crc32c_table[k][i] = (c >> 8) ^ crc32c_table[0][c & 0xff];
            uint64_t d = crc64_table[k - 1][i];
            crc64_table[k][i] = (d >> 8) ^ crc64_table[0][d & 0xff];
        }
    }
    // x^(2^0) = x, which in reflected form is bit 30 (bit 62).
    crc32c_x2n[0] = 1u << 30;
    crc32_x2n[0] = 1u << 30;
    crc64_x2n[0] = 1ull << 62;
    for (int n = 1; n < 64; n++) {
        crc32c_x2n[n] = mulmod32(crc32c_x2n[n - 1], crc32c_x2n[n - 1], CRC32C_POLY);
        crc32_x2n[n] = mulmod32(crc32_x2n[n - 1], crc32_x2n[n - 1], CRC32_POLY);
        crc64_x2n[n] = mulmod64(crc64_x2n[n - 1], crc64_x2n[n - 1], CRC64NVME_POLY);
    }
#if CC_X86
    __builtin_cpu_init();
    crc32c_has_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#endif
}

static inline uint64_t load64le(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

// ---- CRC-32C -----------------------------------------------------------------

static uint32_t crc32c_sw_raw(uint32_t c, const uint8_t *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) {
        c = (c >> 8) ^ crc32c_table[0][(c ^ *p++) & 0xff];
        n--;
    }
    while (n >= 8) {
        uint64_t v = load64le(p) ^ c;
        uint32_t lo = (uint32_t)v, hi = (uint32_t)(v >> 32);
        c = crc32c_table[7][lo & 0xff] ^ crc32c_table[6][(lo >> 8) & 0xff] ^
            crc32c_table[5][(lo >> 16) & 0xff] ^ crc32c_table[4][lo >> 24] ^
            crc32c_table[3][hi & 0xff] ^ crc32c_table[2][(hi >> 8) & 0xff] ^
            crc32c_table[1][(hi >> 16) & 0xff] ^ crc32c_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) c = (c >> 8) ^ crc32c_table[0][(c ^ *p++) & 0xff];
    return c;
}

#if CC_X86
/// Bytes per lane in the 3-way interleaved loop. The three lanes hide the
/// 3-cycle latency of `crc32`; merging them costs two GF(2) multiplications.
#define CC_LANE 4096

__attribute__((target("sse4.2")))
static uint32_t crc32c_hw_raw(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c = crc;
    while (n && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        n--;
    }
    if (n >= 3 * CC_LANE) {
        // Shifting a raw CRC register over CC_LANE zero bytes = multiply by x^(8*CC_LANE).
        uint32_t shift = x2nmod32(CC_LANE, 3, crc32c_x2n, CRC32C_POLY);
        while (n >= 3 * CC_LANE) {
            uint64_t c1 = 0, c2 = 0;
            const uint8_t *p1 = p + CC_LANE, *p2 = p + 2 * CC_LANE;
            for (size_t i = 0; i < CC_LANE; i += 8) {
                c = _mm_crc32_u64(c, load64le(p + i));
                c1 = _mm_crc32_u64(c1, load64le(p1 + i));
                c2 = _mm_crc32_u64(c2, load64le(p2 + i));
            }
            c = mulmod32(shift, (uint32_t)c, CRC32C_POLY) ^ (uint32_t)c1;
            c = mulmod32(shift, (uint32_t)c, CRC32C_POLY) ^ (uint32_t)c2;
            p += 3 * CC_LANE;
            n -= 3 * CC_LANE;
        }
    }
    while (n >= 8) {
        c = _mm_crc32_u64(c, load64le(p));
        p += 8;
        n -= 8;
    }
    while (n--) c = _mm_crc32_u8((uint32_t)c, *p++);
    return (uint32_t)c;
}
#endif

uint32_t cc_crc32c_update(uint32_t crc, const void *data, size_t len) {
    if (len == 0 || data == NULL) return crc;
#if CC_X86
    if (crc32c_has_hw) return ~crc32c_hw_raw(~crc, (const uint8_t *)data, len);
#endif
    return ~crc32c_sw_raw(~crc, (const uint8_t *)data, len);
}

uint32_t cc_crc32c_update_sw(uint32_t crc, const void *data, size_t len) {
    if (len == 0 || data == NULL) return crc;
    return ~crc32c_sw_raw(~crc, (const uint8_t *)data, len);
}

int cc_crc32c_hardware(void) { return crc32c_has_hw; }

uint32_t cc_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b) {
    return mulmod32(x2nmod32(len_b, 3, crc32c_x2n, CRC32C_POLY), crc_a, CRC32C_POLY) ^ crc_b;
}

uint32_t cc_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b) {
    return mulmod32(x2nmod32(len_b, 3, crc32_x2n, CRC32_POLY), crc_a, CRC32_POLY) ^ crc_b;
}

// ---- CRC-64/NVME -------------------------------------------------------------

uint64_t cc_crc64nvme_update(uint64_t crc, const void *data, size_t len) {
    if (len == 0 || data == NULL) return crc;
    const uint8_t *p = (const uint8_t *)data;
    uint64_t c = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        c = (c >> 8) ^ crc64_table[0][(c ^ *p++) & 0xff];
        len--;
    }
    while (len >= 8) {
        c ^= load64le(p);
        c = crc64_table[7][c & 0xff] ^ crc64_table[6][(c >> 8) & 0xff] ^
            crc64_table[5][(c >> 16) & 0xff] ^ crc64_table[4][(c >> 24) & 0xff] ^
            crc64_table[3][(c >> 32) & 0xff] ^ crc64_table[2][(c >> 40) & 0xff] ^
            crc64_table[1][(c >> 48) & 0xff] ^ crc64_table[0][c >> 56];
        p += 8;
        len -= 8;
    }
    while (len--) c = (c >> 8) ^ crc64_table[0][(c ^ *p++) & 0xff];
    return ~c;
}

uint64_t cc_crc64nvme_combine(uint64_t crc_a, uint64_t crc_b, uint64_t len_b) {
    return mulmod64(x2nmod64(len_b, 3, crc64_x2n, CRC64NVME_POLY), crc_a, CRC64NVME_POLY) ^ crc_b;
}
