#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hb_proto::config::parse_authkeys(std::path::Path::new("authkeys"), data);
});
