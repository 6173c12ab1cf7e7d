//! Fuzz the `authkeys` parser: the body is `hb_proto::fuzz::authkeys`, which the stable corpus replay
//! (`hb-proto/tests/fuzz_corpus.rs`) runs too. Run: `cargo xtask fuzz`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hb_proto::fuzz::authkeys(data));
