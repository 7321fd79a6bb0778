//! Fixed-capacity types for shared memory: strings, vectors and flags that
//! stay sound whatever bytes a peer writes.
