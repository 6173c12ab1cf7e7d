//! Fuzz the wire decoder: any byte string gives `Ok` or an error, never a panic, and whatever
//! decodes re-encodes and decodes to the same message. The body is `hb_proto::fuzz::decode`,
//! which the stable corpus replay (`hb-proto/tests/fuzz_corpus.rs`) runs too.
//! Run: `cargo xtask fuzz`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hb_proto::fuzz::decode(data));
