//! Benchmarks of pseidon (run as binaries, not as timed tests): the registry and
//! plugin loading ([`registry`]); the Kafka benches join as modules of their own.
#![deny(missing_docs)]

pub mod registry;
