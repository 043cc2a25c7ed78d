// XXH3 with run-time CPU dispatch: Debian's libxxhash builds XXH3_64bits for the baseline
// x86-64 (SSE2), while its *_dispatch variants pick AVX2/AVX-512 when the CPU has them,
// 3-5x faster here. Same hash values either way. Include this instead of <xxhash.h>.
#pragma once

#include "stream/xxh3.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xxh_x86dispatch.h>  // maps XXH3_64bits and XXH3_64bits_update to the dispatchers
#endif
