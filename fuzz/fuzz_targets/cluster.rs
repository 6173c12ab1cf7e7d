//! Fuzz a simulated two-node cluster driven by arbitrary steps: never two owners outside a
//! partition, no panic. The body is `hb_proto::fuzz::cluster`, which the stable corpus replay
//! (`hb-proto/tests/fuzz_corpus.rs`) runs too. Run: `cargo xtask fuzz`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hb_proto::fuzz::cluster(data));
