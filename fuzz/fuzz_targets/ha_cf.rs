//! Fuzz the `ha_cf` parser: any bytes give a parse or diagnostics, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hb_proto::config::parse_ha_cf(std::path::Path::new("ha.cf"), data);
});
