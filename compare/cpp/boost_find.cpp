// boost-find: Boost.Interprocess's managed_shared_memory holding N uint64_t
// objects named like the entries of shmstore's store benchmark ("key/0",
// "key/1", ...), and the time of find<uint64_t>(name), which returns a raw
// pointer: the lookup shmstore's Store::contains and Store::get are compared
// with (compare/store.sh).
//
// Usage: boost-find [OPS]   (finds per batch, default 200000)
//
// For N = 10, 1,000 and 100,000 objects: find of a random existing key and
// find of one key (the middle one) every time. The random keys are drawn as
// examples/store_bench.rs draws them (the same xorshift from the same seed,
// 65,536 draws used in turn), so both programs look up the same strings in
// the same order; the digest printed with each figure lets compare/store.sh
// check that. Each figure: one warm-up batch, then 7 timed batches of OPS
// finds, the variants interleaved in an order rotated at each repetition.
// One JSON line per figure on stdout:
//   {"peer": "boost-find", "what": "find", "key": "random" | "same",
//    "keys": N, "ops": OPS, "digest": "...", "ns_per_op": [7 batches]}
#include <boost/interprocess/managed_shared_memory.hpp>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../c/harness.h"

namespace bip = boost::interprocess;

static const size_t SIZES[] = {10, 1000, 100000};
static const int REPS = 7;
// Random keys drawn in advance (as store_bench's DRAWS).
static const size_t DRAWS = 1 << 16;

// Keeps `p` (and every memory write before) from being optimised away.
template <typename T>
static inline void keep(T const &p) {
    asm volatile("" : : "g"(p) : "memory");
}

// FNV-1a, 64-bit: the digest of the keys a variant asks for, in order.
static uint64_t fnv(uint64_t h, const std::string &s) {
    for (unsigned char c : s) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    h ^= '\n';
    h *= 0x100000001b3ull;
    return h;
}

struct Filled {
    size_t keys;
    std::string segment_name;
    bip::managed_shared_memory *segment;
    std::vector<std::string> names;
    std::vector<const char *> draws;  // the DRAWS random keys, in order
    std::string random_digest, same_digest;

    const char *middle() const { return names[keys / 2].c_str(); }
};

static std::string hex(uint64_t h) {
    char buf[17];
    snprintf(buf, sizeof buf, "%016" PRIx64, h);
    return buf;
}

static Filled *fill(size_t keys) {
    Filled *f = new Filled();
    f->keys = keys;
    f->segment_name = "shmstore-compare_boost-find_" + std::to_string(getpid()) + "_" + std::to_string(keys);
    bip::shared_memory_object::remove(f->segment_name.c_str());
    // A named uint64_t takes well under 128 bytes with its name and index
    // node; room to spare.
    f->segment = new bip::managed_shared_memory(bip::create_only, f->segment_name.c_str(), keys * 256 + (1 << 20));
    for (size_t i = 0; i < keys; i++) {
        f->names.push_back("key/" + std::to_string(i));
        f->segment->construct<uint64_t>(f->names.back().c_str())(i);
    }
    // store_bench's draws: xorshift64 (13, 7, 17) from this seed, mod keys.
    uint64_t rng = 0x2545f4914f6cdd1dull ^ (uint64_t)keys;
    uint64_t digest = 0xcbf29ce484222325ull;
    for (size_t d = 0; d < DRAWS; d++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        const std::string &name = f->names[rng % keys];
        f->draws.push_back(name.c_str());
        digest = fnv(digest, name);
    }
    f->random_digest = hex(digest);
    f->same_digest = hex(fnv(0xcbf29ce484222325ull, f->names[keys / 2]));
    return f;
}

static void destroy(Filled *f) {
    delete f->segment;
    bip::shared_memory_object::remove(f->segment_name.c_str());
    delete f;
}

// One batch: `ops` finds; ns per find.
static double batch(const Filled *f, bool same, long long ops) {
    bip::managed_shared_memory &seg = *f->segment;
    const char *key = f->middle();
    uint64_t t = h_now_ns();
    if (same) {
        for (long long i = 0; i < ops; i++) {
            keep(key);
            std::pair<uint64_t *, std::size_t> found = seg.find<uint64_t>(key);
            if (!found.first) abort();
            keep(found.first);
        }
    } else {
        for (long long i = 0; i < ops; i++) {
            std::pair<uint64_t *, std::size_t> found = seg.find<uint64_t>(f->draws[i % DRAWS]);
            if (!found.first) abort();
            keep(found.first);
        }
    }
    return (double)(h_now_ns() - t) / (double)ops;
}

int main(int argc, char **argv) {
    long long ops = 200000;
    if (argc > 2 || (argc == 2 && (ops = atoll(argv[1])) < 1)) {
        fprintf(stderr, "usage: %s [OPS]   (finds per batch, default 200000)\n", argv[0]);
        return 2;
    }
    std::vector<Filled *> stores;
    int rc = 0;
    try {
        for (size_t keys : SIZES) stores.push_back(fill(keys));
        // Variant v: store v / 2, random key if v is even; the sizes of one
        // kind next to each other, as store_bench runs them.
        const int n = 2 * (int)stores.size();
        auto variant = [&](int k) { return std::make_pair(stores[k % stores.size()], k >= (int)stores.size()); };
        std::vector<std::vector<double>> samples(n);
        for (int k = 0; k < n; k++) batch(variant(k).first, variant(k).second, ops);  // warm-up
        for (int r = 0; r < REPS; r++) {
            for (int j = 0; j < n; j++) {
                int k = (j + r) % n;
                samples[k].push_back(batch(variant(k).first, variant(k).second, ops));
            }
        }
        for (int k = 0; k < n; k++) {
            auto [f, same] = variant(k);
            printf("{\"peer\": \"boost-find\", \"what\": \"find\", \"key\": \"%s\", \"keys\": %zu, "
                   "\"ops\": %lld, \"digest\": \"%s\", \"ns_per_op\": [",
                   same ? "same" : "random", f->keys, ops,
                   (same ? f->same_digest : f->random_digest).c_str());
            for (size_t s = 0; s < samples[k].size(); s++) printf("%s%.2f", s ? ", " : "", samples[k][s]);
            printf("]}\n");
        }
    } catch (const std::exception &e) {
        fprintf(stderr, "boost-find: %s\n", e.what());
        rc = 1;
    }
    for (Filled *f : stores) destroy(f);
    return rc;
}
