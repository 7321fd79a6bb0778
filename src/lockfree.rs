//! Lock-free access to values made only of atomics.
