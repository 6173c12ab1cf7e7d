//! Fuzz the wire decoder: any byte string must give `Ok` or an error, never a panic, and
//! whatever decodes must re-encode and decode to the same message.
//!
//! Run: `cargo +nightly-2026-05-20 fuzz run decode` from the workspace root.
#![no_main]

use std::collections::BTreeMap;

use hb_proto::{
    config::{AuthKey, AuthKeys, AuthMethod},
    packet::{decode, encode, peek_header},
};
use libfuzzer_sys::fuzz_target;

fn keys() -> AuthKeys {
    // One key per method; CRC (id 4) lets the fuzzer reach the post-authentication body checks.
    let keys = [
        (1, AuthMethod::Sha256, &b"fuzz sha256"[..]),
        (2, AuthMethod::Sha1, &b"fuzz sha1"[..]),
        (3, AuthMethod::Md5, &b"fuzz md5"[..]),
        (4, AuthMethod::Crc, &b""[..]),
    ]
    .into_iter()
    .map(|(id, method, secret)| {
        (
            id,
            AuthKey {
                id,
                method,
                secret: secret.to_vec(),
            },
        )
    })
    .collect::<BTreeMap<_, _>>();
    AuthKeys { active: 1, keys }
}

fuzz_target!(|data: &[u8]| {
    let keys = keys();
    let header = peek_header(data);
    match decode(data, &keys) {
        Ok(msg) => {
            let Ok(h) = header else {
                panic!("decode accepted what peek_header refused");
            };
            assert_eq!(
                (h.sender, h.generation, h.seq),
                (msg.sender, msg.generation, msg.seq)
            );
            for key in keys.keys.values() {
                if let Ok(bytes) = encode(&msg, key) {
                    assert_eq!(decode(&bytes, &keys).ok(), Some(msg.clone()));
                }
            }
        }
        Err(e) => {
            let _ = e.reason();
        }
    }
});
