//! Fuzz the `authkeys` parser: any bytes give a parse or diagnostics, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hb_proto::config::parse_authkeys(std::path::Path::new("authkeys"), data);
});
