// A read-only handle maps its segment PROT_READ and cannot take the lock:
// it has no `lock()`, so writing through one does not compile.
use shmstore::SharedReader;

fn main() {
    let _guard = SharedReader::<u64>::open("x").unwrap().lock();
}
