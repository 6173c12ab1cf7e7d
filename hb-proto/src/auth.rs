//! Message authentication per `authkeys`: the digest in every hb message's trailer.
//!
//! The digest covers every byte of the message before the digest itself (header, body and the
//! trailer's key id, method and digest length; see `docs/protocol.md`). `sha256`, `sha1` and
//! `md5` are HMACs keyed with the `authkeys` secret and verified in constant time; `crc` is a
//! CRC32 (IEEE) of the same bytes, which detects corruption and gives no security.

use hmac::{Hmac, Mac, digest::KeyInit};

use crate::config::{AuthKey, AuthMethod};

/// Largest digest any method produces (HMAC-SHA256).
pub const MAX_DIGEST_LEN: usize = 32;

impl AuthMethod {
    /// Every method, in wire-code order.
    pub const ALL: [AuthMethod; 4] = [
        AuthMethod::Crc,
        AuthMethod::Md5,
        AuthMethod::Sha1,
        AuthMethod::Sha256,
    ];

    /// The method's code in the trailer's method byte.
    pub const fn wire_code(self) -> u8 {
        match self {
            AuthMethod::Crc => 1,
            AuthMethod::Md5 => 2,
            AuthMethod::Sha1 => 3,
            AuthMethod::Sha256 => 4,
        }
    }

    /// The method with trailer code `code`, if any.
    pub const fn from_wire_code(code: u8) -> Option<AuthMethod> {
        match code {
            1 => Some(AuthMethod::Crc),
            2 => Some(AuthMethod::Md5),
            3 => Some(AuthMethod::Sha1),
            4 => Some(AuthMethod::Sha256),
            _ => None,
        }
    }

    /// Length in bytes of the method's digest.
    pub const fn digest_len(self) -> usize {
        match self {
            AuthMethod::Crc => 4,
            AuthMethod::Md5 => 16,
            AuthMethod::Sha1 => 20,
            AuthMethod::Sha256 => 32,
        }
    }

    /// The method's name as written in `authkeys`.
    pub const fn name(self) -> &'static str {
        match self {
            AuthMethod::Crc => "crc",
            AuthMethod::Md5 => "md5",
            AuthMethod::Sha1 => "sha1",
            AuthMethod::Sha256 => "sha256",
        }
    }
}

/// A computed digest: up to [`MAX_DIGEST_LEN`] bytes, no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    bytes: [u8; MAX_DIGEST_LEN],
    len: usize,
}

impl Digest {
    fn from_slice(s: &[u8]) -> Self {
        let mut bytes = [0u8; MAX_DIGEST_LEN];
        let len = s.len().min(MAX_DIGEST_LEN);
        bytes[..len].copy_from_slice(&s[..len]);
        Self { bytes, len }
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Why a digest could not be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The HMAC implementation refused the key (does not happen for HMAC, which takes keys of
    /// any length; kept so no error is swallowed).
    #[error("authentication key {0} refused by the HMAC implementation")]
    InvalidKey(u8),
}

fn hmac_digest<M: Mac + KeyInit>(key: &AuthKey, data: &[u8]) -> Result<Digest, AuthError> {
    let mut mac =
        <M as KeyInit>::new_from_slice(&key.secret).map_err(|_| AuthError::InvalidKey(key.id))?;
    mac.update(data);
    Ok(Digest::from_slice(&mac.finalize().into_bytes()))
}

fn hmac_verify<M: Mac + KeyInit>(key: &AuthKey, data: &[u8], tag: &[u8]) -> bool {
    match <M as KeyInit>::new_from_slice(&key.secret) {
        Ok(mut mac) => {
            mac.update(data);
            mac.verify_slice(tag).is_ok()
        }
        Err(_) => false,
    }
}

/// The digest of `data` under `key` (its method and secret).
pub fn sign(key: &AuthKey, data: &[u8]) -> Result<Digest, AuthError> {
    match key.method {
        AuthMethod::Crc => Ok(Digest::from_slice(&crc32fast::hash(data).to_be_bytes())),
        AuthMethod::Md5 => hmac_digest::<Hmac<md5::Md5>>(key, data),
        AuthMethod::Sha1 => hmac_digest::<Hmac<sha1::Sha1>>(key, data),
        AuthMethod::Sha256 => hmac_digest::<Hmac<sha2::Sha256>>(key, data),
    }
}

/// Whether `tag` is the digest of `data` under `key`. HMACs compare in constant time; a tag
/// of the wrong length never verifies.
pub fn verify(key: &AuthKey, data: &[u8], tag: &[u8]) -> bool {
    match key.method {
        AuthMethod::Crc => {
            let want = crc32fast::hash(data).to_be_bytes();
            tag.len() == want.len()
                && want.iter().zip(tag).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        }
        AuthMethod::Md5 => hmac_verify::<Hmac<md5::Md5>>(key, data, tag),
        AuthMethod::Sha1 => hmac_verify::<Hmac<sha1::Sha1>>(key, data, tag),
        AuthMethod::Sha256 => hmac_verify::<Hmac<sha2::Sha256>>(key, data, tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(method: AuthMethod, secret: &[u8]) -> AuthKey {
        AuthKey {
            id: 1,
            method,
            secret: secret.to_vec(),
        }
    }

    #[test]
    fn rfc4231_hmac_sha256_case_2() {
        let k = key(AuthMethod::Sha256, b"Jefe");
        let d = sign(&k, b"what do ya want for nothing?").unwrap();
        assert_eq!(
            d.as_bytes(),
            [
                0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
                0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9,
                0x64, 0xec, 0x38, 0x43
            ]
        );
    }

    #[test]
    fn rfc2202_hmac_md5_and_sha1_case_2() {
        let md5 = sign(
            &key(AuthMethod::Md5, b"Jefe"),
            b"what do ya want for nothing?",
        )
        .unwrap();
        assert_eq!(
            md5.as_bytes(),
            [
                0x75, 0x0c, 0x78, 0x3e, 0x6a, 0xb0, 0xb5, 0x03, 0xea, 0xa8, 0x6e, 0x31, 0x0a, 0x5d,
                0xb7, 0x38
            ]
        );
        let sha1 = sign(
            &key(AuthMethod::Sha1, b"Jefe"),
            b"what do ya want for nothing?",
        )
        .unwrap();
        assert_eq!(
            sha1.as_bytes(),
            [
                0xef, 0xfc, 0xdf, 0x6a, 0xe5, 0xeb, 0x2f, 0xa2, 0xd2, 0x74, 0x16, 0xd5, 0xf1, 0x84,
                0xdf, 0x9c, 0x25, 0x9a, 0x7c, 0x79
            ]
        );
    }

    #[test]
    fn crc_is_ieee_crc32_big_endian() {
        // CRC-32/ISO-HDLC check value of "123456789" is 0xCBF43926.
        let d = sign(&key(AuthMethod::Crc, b""), b"123456789").unwrap();
        assert_eq!(d.as_bytes(), [0xcb, 0xf4, 0x39, 0x26]);
    }

    #[test]
    fn verify_accepts_own_digest_and_rejects_changes() {
        for m in AuthMethod::ALL {
            let k = key(m, b"secret");
            let d = sign(&k, b"payload").unwrap();
            assert_eq!(d.as_bytes().len(), m.digest_len());
            assert!(verify(&k, b"payload", d.as_bytes()));
            assert!(!verify(&k, b"payloaD", d.as_bytes()));
            let mut bad = d.as_bytes().to_vec();
            bad[0] ^= 1;
            assert!(!verify(&k, b"payload", &bad));
            assert!(!verify(&k, b"payload", &d.as_bytes()[1..]));
            if m != AuthMethod::Crc {
                assert!(!verify(&key(m, b"other"), b"payload", d.as_bytes()));
            }
        }
    }

    #[test]
    fn wire_codes_round_trip() {
        for m in AuthMethod::ALL {
            assert_eq!(AuthMethod::from_wire_code(m.wire_code()), Some(m));
        }
        assert_eq!(AuthMethod::from_wire_code(0), None);
        assert_eq!(AuthMethod::from_wire_code(5), None);
    }
}
