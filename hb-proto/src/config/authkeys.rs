//! `authkeys`: `auth N` plus `N method [key]` lines (Heartbeat's `parse_authfile`).
//!
//! Lines starting with `#` are comments. Methods: `crc` (no key, no security), `md5` and `sha1`
//! (HMAC with the key, as Heartbeat) and hb's `sha256`. Several ids may be listed for key
//! rotation: `auth N` signs, every listed key verifies. The key is one word, as Heartbeat reads
//! it.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use super::{
    diag::{Diags, Parsed, lines, words},
    model::{AuthKey, AuthKeys, AuthMethod, Diagnostic},
};

/// Heartbeat's refusal, word for word, when the key file is readable by group or others.
pub fn bad_permissions_message(path: &Path) -> String {
    format!(
        "Bad permissions on keyfile [{}], 600 recommended.",
        path.display()
    )
}

/// Checks the key file's mode bits (from its metadata): refused when readable by group or
/// others, as Heartbeat does.
pub fn check_keyfile_mode(path: &Path, mode: u32) -> Result<(), Diagnostic> {
    if mode & 0o044 != 0 {
        Err(Diagnostic {
            path: path.to_path_buf(),
            line: 0,
            message: bad_permissions_message(path),
        })
    } else {
        Ok(())
    }
}

/// Parses `authkeys` from bytes (the permission check is [`check_keyfile_mode`]).
pub fn parse_authkeys(path: &Path, bytes: &[u8]) -> Result<Parsed<AuthKeys>, Vec<Diagnostic>> {
    let (keys, d) = parse_inner(path, bytes);
    d.finish(keys)
}

fn method(name: &str) -> Option<AuthMethod> {
    match name {
        "crc" => Some(AuthMethod::Crc),
        "md5" => Some(AuthMethod::Md5),
        "sha1" => Some(AuthMethod::Sha1),
        "sha256" => Some(AuthMethod::Sha256),
        _ => None,
    }
}

pub(crate) fn parse_inner(path: &Path, bytes: &[u8]) -> (AuthKeys, Diags) {
    let mut d = Diags::new(path);
    let mut active: Option<(u8, usize)> = None;
    let mut keys: BTreeMap<u8, AuthKey> = BTreeMap::new();
    let mut key_lines: BTreeMap<u8, usize> = BTreeMap::new();
    // Ids of key lines, valid or not (so a bad key line is not reported twice).
    let mut mentioned: BTreeSet<u8> = BTreeSet::new();
    for (n, text) in lines(bytes, &mut d) {
        let text = text.trim_start_matches(super::diag::is_ws);
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let w: Vec<&str> = words(text).collect();
        if w.first() == Some(&"auth") {
            let trailing_ok = w.get(2).is_none_or(|x| x.starts_with('#'));
            match (w.get(1), trailing_ok) {
                (Some(id), true) => match id.parse::<u8>() {
                    Ok(id) => {
                        if let Some((_, first)) = active {
                            d.warn(
                                n,
                                format!(
                                    "auth given again (first at line {first}); the last one wins"
                                ),
                            );
                        }
                        active = Some((id, n));
                    }
                    Err(_) => d.error(n, format!("bad auth line: '{id}' is not a key id (0..255)")),
                },
                _ => d.error(n, "bad auth line: expected 'auth N'"),
            }
            continue;
        }
        let (Some(id), Some(m)) = (w.first(), w.get(1)) else {
            d.error(
                n,
                "bad authkeys line: expected 'auth N' or 'N method [key]'",
            );
            continue;
        };
        let id_text = id.strip_prefix('+').unwrap_or(id);
        if id_text.is_empty() || !id_text.bytes().all(|b| b.is_ascii_digit()) {
            d.error(
                n,
                format!("bad authkeys line: '{id}' is not a key id (expected 'N method [key]')"),
            );
            continue;
        }
        let Ok(id) = id_text.parse::<u8>() else {
            d.error(n, format!("key id {id_text} is out of range (0..255)"));
            continue;
        };
        mentioned.insert(id);
        let Some(method) = method(m) else {
            d.error(
                n,
                format!("unknown authentication method '{m}' (crc, md5, sha1, sha256)"),
            );
            continue;
        };
        let key = w.get(2).copied().unwrap_or("");
        if w.len() > 3 {
            d.warn(
                n,
                format!(
                    "text after the key is ignored: the key is the single word '{key}', as \
                     Heartbeat reads it"
                ),
            );
        }
        match method {
            AuthMethod::Crc if !key.is_empty() => {
                d.error(n, "method crc takes no key");
                continue;
            }
            AuthMethod::Crc => d.warn(
                n,
                "crc gives no security: it only detects corrupted packets, anyone who can send \
                 to the heartbeat port can forge heartbeats; use sha256",
            ),
            _ if key.is_empty() => {
                d.error(n, format!("method {m} requires a key"));
                continue;
            }
            _ => {}
        }
        if let Some(first) = key_lines.get(&id) {
            d.error(n, format!("duplicate key id {id} (first at line {first})"));
            continue;
        }
        key_lines.insert(id, n);
        keys.insert(
            id,
            AuthKey {
                id,
                method,
                secret: key.as_bytes().to_vec(),
            },
        );
    }
    let active_id = match active {
        None => {
            d.error(
                0,
                "missing auth directive: add 'auth N' naming the key to sign with",
            );
            0
        }
        Some((id, line)) => {
            if !mentioned.contains(&id) {
                d.error(line, format!("auth {id}: no key with id {id} in this file"));
            }
            id
        }
    };
    (
        AuthKeys {
            active: active_id,
            keys,
        },
        d,
    )
}
