// Peer boost-interprocess: Boost.Interprocess's managed_shared_memory holding
// a struct { interprocess_mutex; u64 } made with find_or_construct, locked
// with scoped_lock: the library's documented way to share a value.
// Usage: boost-interprocess PROCS ITERS | boost-interprocess crash
#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/sync/interprocess_mutex.hpp>
#include <boost/interprocess/sync/scoped_lock.hpp>

#include "../c/harness.h"

namespace bip = boost::interprocess;

static const char *const PEER = "boost-interprocess";
static const char *const SEGMENT = "shmstore-compare_boost-interprocess";

struct Shared {
    bip::interprocess_mutex mutex;
    uint64_t counter = 0;
};

static void work(void *ctx, long long iters) {
    Shared *s = static_cast<Shared *>(ctx);
    for (long long k = 0; k < iters; k++) {
        bip::scoped_lock<bip::interprocess_mutex> guard(s->mutex);
        s->counter++;
    }
}

static void take(void *ctx) {
    Shared *s = static_cast<Shared *>(ctx);
    s->mutex.lock();
    s->counter = 1;
}

// A holder is killed with the lock; can the survivor lock again within 2 s?
static int crash_test(Shared *s) {
    if (h_kill_holder(take, s) != 0) return h_crash_report(PEER, "errors", "the holder never took the lock");
    auto deadline = boost::posix_time::microsec_clock::universal_time() + boost::posix_time::seconds(2);
    if (s->mutex.timed_lock(deadline)) {
        s->mutex.unlock();
        return h_crash_report(PEER, "errors", "timed_lock succeeded with no notice that the owner died");
    }
    return h_crash_report(PEER, "hangs",
                          "interprocess_mutex::timed_lock(2 s) -> false (the dead process still owns it)");
}

int main(int argc, char **argv) {
    int procs;
    long long iters;
    int crash = h_args(argc, argv, &procs, &iters);

    bip::shared_memory_object::remove(SEGMENT);  // a stale one from a killed run
    int rc;
    {
        bip::managed_shared_memory segment(bip::create_only, SEGMENT, 65536);
        Shared *s = segment.find_or_construct<Shared>("counter")();
        if (crash) {
            rc = crash_test(s);
        } else {
            uint64_t elapsed = h_race(procs, iters, work, s);
            rc = h_report(PEER, procs, iters, s->counter, elapsed);
        }
    }
    bip::shared_memory_object::remove(SEGMENT);
    return rc;
}
