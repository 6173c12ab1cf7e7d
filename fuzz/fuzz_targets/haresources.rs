//! Fuzz the `haresources` parser: any bytes give a parse or diagnostics, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let resolve = |name: &str| Some(std::path::PathBuf::from("/etc/init.d").join(name));
    let _ = hb_proto::config::parse_haresources_with(
        std::path::Path::new("haresources"),
        data,
        &resolve,
        "/etc/init.d",
    );
});
