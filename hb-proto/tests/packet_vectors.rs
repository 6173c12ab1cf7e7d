//! Packet test vectors (bytes <-> `Message`) for every message type and auth method and for every
//! rejection reason, plus round-trip, no-panic and `ReplayGuard` tests.
//!
//! The vector bytes are written field by field from `docs/protocol.md`; the digests were computed
//! independently of this crate (Python's `hmac`/`hashlib`/`zlib.crc32` over the same bytes), so
//! the vectors pin the format, not just this implementation's round trip.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::time::Duration;

use hb_common::wire;
use hb_proto::{
    Timestamp,
    config::{AuthKey, AuthKeys, AuthMethod},
    generation::{generation_after, next_generation},
    message::{
        Echo, GroupState, Holding, Message, MessageKind, NodeStatus, PingCounts, rtt_from_echo,
    },
    packet::{DecodeError, EncodeError, decode, encode, encoded_len, peek_header},
    replay::{RejectReason, ReplayGuard},
};

/// Hex digits to bytes; whitespace is ignored.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn key(id: u8) -> AuthKey {
    let (method, secret): (AuthMethod, &[u8]) = match id {
        1 => (AuthMethod::Sha256, b"hb test key sha256"),
        2 => (AuthMethod::Sha1, b"hb test key sha1"),
        3 => (AuthMethod::Md5, b"hb test key md5"),
        4 => (AuthMethod::Crc, b""),
        _ => panic!("no test key {id}"),
    };
    AuthKey {
        id,
        method,
        secret: secret.to_vec(),
    }
}

fn keys() -> AuthKeys {
    AuthKeys {
        active: 1,
        keys: (1..=4).map(|id| (id, key(id))).collect(),
    }
}

const SENDER: u32 = 0x1122_3344;
const PEER: u32 = 0x5566_7788;

// Heartbeat: header up to the sender, then the total length (per vector), then the rest.
const HB_HEAD: &str = "48426431 01 01 0000 11223344"; // "HBd1", version 1, type 1 heartbeat, flags 0, sender
const HB_REST: &str = "0000\
    0000000000000007\
    000000000000002a\
    000000003b9aca00"; // reserved, generation 7, seq 42, send_time 1_000_000_000
const HB_BODY: &str = "01 01 0002 deadbeef\
    55667788 000000003b9328e0 000000000003d090\
    0000 02 00\
    0001 00 06";
// status active, 1 echo, 2 groups, groups digest 0xdeadbeef;
// echo: node 0x55667788, send_time 999_500_000, hold 250_000 ns;
// group 0: held, no flags; group 1: none, standby|wants.

fn heartbeat() -> Message {
    Message {
        kind: MessageKind::Heartbeat,
        sender: SENDER,
        generation: 7,
        seq: 42,
        send_time: Timestamp::from_nanos(1_000_000_000),
        groups_digest: 0xdead_beef,
        ping: None,
        status: NodeStatus::Active,
        echoes: vec![Echo {
            node: PEER,
            send_time: Timestamp::from_nanos(999_500_000),
            hold: Duration::from_micros(250),
        }],
        groups: vec![
            GroupState {
                group: 0,
                holding: Holding::Held,
                failed: false,
                standby: false,
                wants: false,
            },
            GroupState {
                group: 1,
                holding: Holding::None,
                failed: false,
                standby: true,
                wants: true,
            },
        ],
    }
}

const SD_HEAD: &str = "48426431 01 02 0000 11223344"; // type 2 shutdown
const SD_REST: &str = "0000\
    0000000000000007\
    000000000000002b\
    000000003b9e9a90"; // generation 7, seq 43, send_time 1_000_250_000
const SD_BODY: &str = "02 00 0001 deadbeef 0000 03 01";
// status stopping, 0 echoes, 1 group, digest; group 0: stopping, failed.

fn shutdown() -> Message {
    Message {
        kind: MessageKind::Shutdown,
        sender: SENDER,
        generation: 7,
        seq: 43,
        send_time: Timestamp::from_nanos(1_000_250_000),
        groups_digest: 0xdead_beef,
        ping: None,
        status: NodeStatus::Stopping,
        echoes: vec![],
        groups: vec![GroupState {
            group: 0,
            holding: Holding::Stopping,
            failed: true,
            standby: false,
            wants: false,
        }],
    }
}

/// One valid message: its bytes, the key that signed it and what it decodes to.
struct Vector {
    name: &'static str,
    key: u8,
    bytes: Vec<u8>,
    msg: Message,
}

fn vector(
    name: &'static str,
    shutdown_msg: bool,
    key: u8,
    len: &str,
    trailer: &str,
    digest: &str,
) -> Vector {
    let (head, rest, body, msg) = if shutdown_msg {
        (SD_HEAD, SD_REST, SD_BODY, shutdown())
    } else {
        (HB_HEAD, HB_REST, HB_BODY, heartbeat())
    };
    Vector {
        name,
        key,
        bytes: hex(&[head, len, rest, body, trailer, digest].concat()),
        msg,
    }
}

fn vectors() -> Vec<Vector> {
    vec![
        vector(
            "heartbeat sha256",
            false,
            1,
            "006f",
            "01 04 20",
            "99f8aa6ef90a33b46f54db2142fdcef28d73c3956aa7293b123d613a3165be0a",
        ),
        vector(
            "heartbeat sha1",
            false,
            2,
            "0063",
            "02 03 14",
            "94132fb543293258ea3751edfdea13af5f0e165f",
        ),
        vector(
            "heartbeat md5",
            false,
            3,
            "005f",
            "03 02 10",
            "a34f85cf446314c9c51c4cf48135c038",
        ),
        vector("heartbeat crc", false, 4, "0053", "04 01 04", "fe510ff2"),
        vector(
            "shutdown sha256",
            true,
            1,
            "0057",
            "01 04 20",
            "75f94e93bb545e82fbb88c9b581141aff9b172a104ff70adba7a4384fe06a9ee",
        ),
        vector(
            "shutdown sha1",
            true,
            2,
            "004b",
            "02 03 14",
            "f13614e52b92640217d168ac8e872092f5ead690",
        ),
        vector(
            "shutdown md5",
            true,
            3,
            "0047",
            "03 02 10",
            "046c9224b36fea131d9aa88e06c6e4ef",
        ),
        vector("shutdown crc", true, 4, "003b", "04 01 04", "38cd4cf8"),
    ]
}

#[test]
fn vectors_encode_to_their_bytes() {
    for v in vectors() {
        let got = encode(&v.msg, &key(v.key)).unwrap();
        assert_eq!(got, v.bytes, "{}", v.name);
        assert_eq!(
            got.len(),
            encoded_len(v.msg.echoes.len(), v.msg.groups.len(), key(v.key).method),
            "{}",
            v.name
        );
    }
}

#[test]
fn vectors_decode_to_their_messages() {
    let keys = keys();
    for v in vectors() {
        assert_eq!(decode(&v.bytes, &keys).unwrap(), v.msg, "{}", v.name);
        let h = peek_header(&v.bytes).unwrap();
        assert_eq!(h.kind, v.msg.kind);
        assert_eq!(h.sender, SENDER);
        assert_eq!(h.generation, 7);
        assert_eq!(h.seq, v.msg.seq);
        assert_eq!(h.send_time, v.msg.send_time);
        assert_eq!(usize::from(h.length), v.bytes.len());
        assert_eq!(h.flags, 0);
    }
}

/// The heartbeat of [`vectors`] with ping counts: flags and the 16 bits after the total length.
fn ping_heartbeat(flags: &str, counts: &str, len: &str, trailer: &str, digest: &str) -> Vec<u8> {
    let head = HB_HEAD.replace(" 0000 ", &format!(" {flags} "));
    let rest = HB_REST.replacen("0000", counts, 1);
    hex(&[&head, len, &rest, HB_BODY, trailer, digest].concat())
}

#[test]
fn ping_count_vectors() {
    let keys = keys();
    let with = |reachable, configured, yielding| Message {
        ping: Some(PingCounts {
            reachable,
            configured,
            yielding,
        }),
        ..heartbeat()
    };
    // flags 0x0003 (ping counts, yielding), reachable 1 of 2; CRC and HMAC-SHA256.
    let cases = [
        (
            ping_heartbeat("0003", "0102", "0053", "04 01 04", "92ccf282"),
            4,
            with(1, 2, true),
        ),
        (
            ping_heartbeat(
                "0003",
                "0102",
                "006f",
                "01 04 20",
                "6540578978a84726a306a2854bcb6a0106e16eaf84776a529b8f12986836c90d",
            ),
            1,
            with(1, 2, true),
        ),
        // flags 0x0001: 2 of 2, not yielding.
        (
            ping_heartbeat("0001", "0202", "0053", "04 01 04", "4fe4a280"),
            4,
            with(2, 2, false),
        ),
    ];
    for (bytes, k, msg) in cases {
        assert_eq!(encode(&msg, &key(k)).unwrap(), bytes, "{msg:?}");
        assert_eq!(decode(&bytes, &keys).unwrap(), msg);
        assert_eq!(peek_header(&bytes).unwrap().flags & 0x0001, 0x0001);
    }
    // The bytes without the flag are ignored (a sender from before ping counts never sets
    // them, and an old receiver ignores flags and these bytes alike).
    let b = ping_heartbeat("0000", "0102", "0053", "04 01 04", "bba0007f");
    assert_eq!(decode(&b, &keys).unwrap(), heartbeat());
    // More reachable than configured: malformed after authentication.
    let b = ping_heartbeat("0001", "0302", "0053", "04 01 04", "cf0ef066");
    assert_eq!(
        decode(&b, &keys),
        Err(DecodeError::Malformed(
            "more reachable ping nodes than configured"
        ))
    );
    assert!(matches!(
        encode(&with(3, 2, false), &key(4)),
        Err(EncodeError::PingCounts(_))
    ));
}

#[test]
fn header_offsets_are_the_ones_xdp_reads() {
    let v = &vectors()[0].bytes;
    assert_eq!(&v[wire::OFF_MAGIC..wire::OFF_MAGIC + 4], b"HBd1");
    assert_eq!(v[wire::OFF_VERSION], wire::VERSION);
    assert_eq!(
        &v[wire::OFF_SENDER..wire::OFF_SENDER + 4],
        &SENDER.to_be_bytes()
    );
    assert_eq!(&v[wire::OFF_SEQ..wire::OFF_SEQ + 8], &42u64.to_be_bytes());
    assert_eq!(
        &v[wire::OFF_SEND_TIME..wire::OFF_SEND_TIME + 8],
        &1_000_000_000u64.to_be_bytes()
    );
}

/// A heartbeat signed with CRC key 4: given total length, body hex and digest hex.
fn crc_heartbeat_with(len: &str, body: &str, digest: &str) -> Vec<u8> {
    hex(&[HB_HEAD, len, HB_REST, body, "04 01 04", digest].concat())
}

#[test]
fn rejection_vectors() {
    let keys = keys();
    let good = vectors().remove(3).bytes; // heartbeat crc, 83 bytes
    let sha = vectors().remove(0).bytes; // heartbeat sha256, 111 bytes

    // bad_magic: "HBx1".
    let mut b = good.clone();
    b[2] = b'x';
    assert_eq!(decode(&b, &keys), Err(DecodeError::BadMagic));
    // Not an hb message at all (but header-sized).
    assert_eq!(
        decode(&[0u8; wire::HEADER_LEN], &keys),
        Err(DecodeError::BadMagic)
    );

    // bad_version: version 2.
    let b = hex(&[
        "48426431 02 01 0000 11223344 0053",
        HB_REST,
        HB_BODY,
        "04 01 04 fe510ff2",
    ]
    .concat());
    assert_eq!(decode(&b, &keys), Err(DecodeError::BadVersion(2)));

    // truncated: shorter than the header.
    assert_eq!(decode(&good[..39], &keys), Err(DecodeError::Truncated));
    assert_eq!(decode(&[], &keys), Err(DecodeError::Truncated));
    // truncated: length field matches, but the echo count (3) claims more than the message holds.
    let b = hex(&[
        HB_HEAD,
        "0053",
        HB_REST,
        &HB_BODY.replacen("01 01 0002", "01 03 0002", 1),
        "04 01 04 fe510ff2",
    ]
    .concat());
    assert_eq!(decode(&b, &keys), Err(DecodeError::Truncated));
    // truncated: the digest length (0x20) runs past the end.
    let b = crc_heartbeat_with("0053", HB_BODY, "fe510ff2");
    let mut b2 = b.clone();
    b2[78] = 0x20; // trailer at 76: key id, method, digest length (78)
    assert_eq!(decode(&b2, &keys), Err(DecodeError::Truncated));

    // oversized: 1025 bytes, whatever they hold.
    let mut b = good.clone();
    b.resize(wire::MAX_MESSAGE_LEN + 1, 0);
    b[wire::OFF_LENGTH..wire::OFF_LENGTH + 2].copy_from_slice(&1025u16.to_be_bytes());
    assert_eq!(decode(&b, &keys), Err(DecodeError::Oversized(1025)));

    // length_mismatch: header says 84 bytes, datagram has 83.
    let b = crc_heartbeat_with("0054", HB_BODY, "fe510ff2");
    assert_eq!(
        decode(&b, &keys),
        Err(DecodeError::LengthMismatch {
            header: 84,
            actual: 83
        })
    );

    // unknown_type: type 3.
    let b = hex(&[
        "48426431 01 03 0000 11223344 0053",
        HB_REST,
        HB_BODY,
        "04 01 04 fe510ff2",
    ]
    .concat());
    assert_eq!(decode(&b, &keys), Err(DecodeError::UnknownType(3)));

    // malformed (authenticated, so only a real sender could have written these):
    // status 7;
    let b = crc_heartbeat_with(
        "0053",
        &HB_BODY.replacen("01 01 0002", "07 01 0002", 1),
        "82163045",
    );
    assert_eq!(
        decode(&b, &keys),
        Err(DecodeError::Malformed("unknown node status"))
    );
    // group flag bit 0x10;
    let b = crc_heartbeat_with(
        "0053",
        &HB_BODY.replace("0001 00 06", "0001 00 16"),
        "ae48586d",
    );
    assert_eq!(
        decode(&b, &keys),
        Err(DecodeError::Malformed("unknown group flag bits"))
    );
    // holding 4;
    let b = crc_heartbeat_with(
        "0053",
        &HB_BODY.replace("0001 00 06", "0001 04 06"),
        "0bd1a932",
    );
    assert_eq!(
        decode(&b, &keys),
        Err(DecodeError::Malformed("unknown group holding state"))
    );
    // a byte after the digest (length field counts it);
    let b = hex(&[HB_HEAD, "0054", HB_REST, HB_BODY, "04 01 04 fe510ff2 00"].concat());
    assert_eq!(
        decode(&b, &keys),
        Err(DecodeError::Malformed("bytes after the digest"))
    );
    // a CRC key with a 2-byte digest (and a message 2 bytes shorter).
    let b = hex(&[HB_HEAD, "0051", HB_REST, HB_BODY, "04 01 02 fe51"].concat());
    assert_eq!(
        decode(&b, &keys),
        Err(DecodeError::Malformed(
            "digest length does not match the method"
        ))
    );

    // unknown_key: key id 9.
    let b = hex(&[HB_HEAD, "0053", HB_REST, HB_BODY, "09 01 04 fe510ff2"].concat());
    assert_eq!(decode(&b, &keys), Err(DecodeError::UnknownKey(9)));

    // method_mismatch: key 4 is crc, the trailer says sha256 (4).
    let b = hex(&[HB_HEAD, "0053", HB_REST, HB_BODY, "04 04 04 fe510ff2"].concat());
    assert_eq!(
        decode(&b, &keys),
        Err(DecodeError::MethodMismatch {
            key: 4,
            expected: AuthMethod::Crc,
            got: 4
        })
    );

    // auth_failed: last digest byte flipped; a body byte changed; right layout, wrong secret.
    let mut b = sha.clone();
    let last = b.len() - 1;
    b[last] ^= 0x01;
    assert_eq!(decode(&b, &keys), Err(DecodeError::AuthFailed));
    let mut b = sha.clone();
    b[wire::OFF_SEQ + 7] = 0x2b; // seq 43 under seq 42's digest
    assert_eq!(decode(&b, &keys), Err(DecodeError::AuthFailed));
    let mut other = keys.clone();
    other.keys.get_mut(&1).unwrap().secret = b"not the secret".to_vec();
    assert_eq!(decode(&sha, &other), Err(DecodeError::AuthFailed));
    let b = crc_heartbeat_with("0053", HB_BODY, "fe510ff3");
    assert_eq!(decode(&b, &keys), Err(DecodeError::AuthFailed));
}

#[test]
fn malformed_fields_are_not_reported_before_authentication() {
    // Status 7 under the good message's digest: a forgery is auth_failed, not malformed.
    let b = crc_heartbeat_with(
        "0053",
        &HB_BODY.replacen("01 01 0002", "07 01 0002", 1),
        "fe510ff2",
    );
    assert_eq!(decode(&b, &keys()), Err(DecodeError::AuthFailed));
}

#[test]
fn decode_error_reasons_are_stable_and_listed() {
    let cases = [
        (DecodeError::BadMagic, "bad_magic"),
        (DecodeError::BadVersion(2), "bad_version"),
        (DecodeError::Truncated, "truncated"),
        (DecodeError::Oversized(2000), "oversized"),
        (
            DecodeError::LengthMismatch {
                header: 1,
                actual: 2,
            },
            "length_mismatch",
        ),
        (DecodeError::UnknownType(9), "unknown_type"),
        (DecodeError::Malformed("x"), "malformed"),
        (DecodeError::UnknownKey(9), "unknown_key"),
        (
            DecodeError::MethodMismatch {
                key: 1,
                expected: AuthMethod::Sha1,
                got: 2,
            },
            "method_mismatch",
        ),
        (DecodeError::AuthFailed, "auth_failed"),
    ];
    for (e, label) in cases {
        assert_eq!(e.reason(), label);
        assert!(DecodeError::REASONS.contains(&label));
    }
    assert_eq!(cases.len(), DecodeError::REASONS.len());
}

#[test]
fn any_listed_key_verifies_key_rotation() {
    // Signed with key 2 while key 1 is active: still accepted.
    let v = vectors().remove(1);
    assert_eq!(keys().active, 1);
    assert_eq!(decode(&v.bytes, &keys()).unwrap(), v.msg);
    // Once key 2 is removed from authkeys it is unknown.
    let mut k = keys();
    k.keys.remove(&2);
    assert_eq!(decode(&v.bytes, &k), Err(DecodeError::UnknownKey(2)));
}

// ---- encode errors ----

#[test]
fn encode_refuses_what_does_not_fit() {
    let k = key(1);
    let mut m = heartbeat();
    // Largest echo count that fits with sha256: (1024 - 48 - 4*2 - 35) / 20 = 46.
    m.echoes = vec![m.echoes[0]; 46];
    assert_eq!(encode(&m, &k).unwrap().len(), 48 + 46 * 20 + 8 + 35);
    m.echoes.push(m.echoes[0]);
    assert_eq!(
        encode(&m, &k),
        Err(EncodeError::TooLong {
            len: 48 + 47 * 20 + 8 + 35
        })
    );
    m.echoes = vec![m.echoes[0]; 256];
    assert_eq!(encode(&m, &k), Err(EncodeError::TooManyEchoes(256)));
    let mut m = heartbeat();
    m.groups = vec![m.groups[0]; 65536];
    assert_eq!(encode(&m, &k), Err(EncodeError::TooManyGroups(65536)));
    let mut m = heartbeat();
    m.echoes[0].hold = Duration::from_secs(u64::MAX);
    assert_eq!(
        encode(&m, &k),
        Err(EncodeError::HoldOverflow(Duration::from_secs(u64::MAX)))
    );
}

// ---- round trip over pseudo-random messages ----

/// xorshift64*: deterministic, no extra crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }
    /// Mostly small, sometimes extreme values.
    fn wide(&mut self) -> u64 {
        match self.below(4) {
            0 => 0,
            1 => u64::MAX - self.below(3),
            2 => self.below(1000),
            _ => self.next(),
        }
    }
}

fn random_message(rng: &mut Rng, max_echoes: u64, max_groups: u64) -> Message {
    let holding = |r: &mut Rng| match r.below(4) {
        0 => Holding::None,
        1 => Holding::Starting,
        2 => Holding::Held,
        _ => Holding::Stopping,
    };
    let n_echoes = rng.below(max_echoes + 1);
    let n_groups = rng.below(max_groups + 1);
    Message {
        kind: if rng.bool() {
            MessageKind::Heartbeat
        } else {
            MessageKind::Shutdown
        },
        sender: rng.next() as u32,
        generation: rng.wide(),
        seq: rng.wide(),
        send_time: Timestamp::from_nanos(rng.wide()),
        groups_digest: rng.next() as u32,
        ping: None,
        status: match rng.below(3) {
            0 => NodeStatus::Init,
            1 => NodeStatus::Active,
            _ => NodeStatus::Stopping,
        },
        echoes: (0..n_echoes)
            .map(|_| Echo {
                node: rng.next() as u32,
                send_time: Timestamp::from_nanos(rng.wide()),
                hold: Duration::from_nanos(rng.wide()),
            })
            .collect(),
        groups: (0..n_groups)
            .map(|_| GroupState {
                group: rng.next() as u16,
                holding: holding(rng),
                failed: rng.bool(),
                standby: rng.bool(),
                wants: rng.bool(),
            })
            .collect(),
    }
}

#[test]
fn round_trip_many_random_messages() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let keys = keys();
    let (mut fitted, mut too_long) = (0, 0);
    for i in 0..4000u32 {
        let k = &keys.keys[&((i % 4) as u8 + 1)];
        let m = random_message(&mut rng, 50, 80);
        let want_len = encoded_len(m.echoes.len(), m.groups.len(), k.method);
        match encode(&m, k) {
            Ok(bytes) => {
                fitted += 1;
                assert_eq!(bytes.len(), want_len);
                assert!(bytes.len() <= wire::MAX_MESSAGE_LEN);
                assert_eq!(decode(&bytes, &keys).unwrap(), m);
                let h = peek_header(&bytes).unwrap();
                assert_eq!(
                    (h.sender, h.generation, h.seq),
                    (m.sender, m.generation, m.seq)
                );
            }
            Err(e) => {
                too_long += 1;
                assert!(want_len > wire::MAX_MESSAGE_LEN);
                assert_eq!(e, EncodeError::TooLong { len: want_len });
            }
        }
    }
    // The generator exercises both sides of the size limit.
    assert!(fitted > 1000 && too_long > 100, "{fitted} {too_long}");
}

// ---- never panic ----

#[test]
fn random_bytes_never_panic_and_never_verify() {
    let mut rng = Rng(42);
    let keys = keys();
    for _ in 0..20_000 {
        let len = rng.below(wire::MAX_MESSAGE_LEN as u64 + 64) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Half the time make the header plausible so decoding gets past it.
        if rng.bool() && b.len() >= wire::HEADER_LEN {
            b[..4].copy_from_slice(&wire::MAGIC);
            b[wire::OFF_VERSION] = wire::VERSION;
            b[wire::OFF_TYPE] = 1 + rng.below(2) as u8;
            let l = b.len() as u16;
            b[wire::OFF_LENGTH..wire::OFF_LENGTH + 2].copy_from_slice(&l.to_be_bytes());
            if b.len() > 48 && rng.bool() {
                b[41] = rng.below(4) as u8; // few echoes
                b[42] = 0;
                b[43] = rng.below(8) as u8;
            }
        }
        let _ = peek_header(&b);
        assert!(decode(&b, &keys).is_err());
    }
}

#[test]
fn mutated_vectors_never_panic_and_hmac_ones_never_verify() {
    let mut rng = Rng(7);
    let keys = keys();
    let vs = vectors();
    for _ in 0..20_000 {
        let v = &vs[rng.below(vs.len() as u64) as usize];
        let mut b = v.bytes.clone();
        let changed = match rng.below(4) {
            0 => {
                let i = rng.below(b.len() as u64) as usize;
                b[i] ^= 1 << rng.below(8);
                true
            }
            1 => {
                let i = rng.below(b.len() as u64) as usize;
                let new = rng.next() as u8;
                let changed = b[i] != new;
                b[i] = new;
                changed
            }
            2 => {
                b.truncate(rng.below(b.len() as u64) as usize);
                true
            }
            _ => {
                let extra = 1 + rng.below(8) as usize;
                b.extend((0..extra).map(|_| rng.next() as u8));
                true
            }
        };
        let _ = peek_header(&b);
        let got = decode(&b, &keys);
        if !changed {
            assert_eq!(got.as_ref(), Ok(&v.msg));
        } else if keys.keys[&v.key].method != AuthMethod::Crc {
            assert!(got.is_err(), "{}: mutation accepted", v.name);
        }
    }
}

// ---- ReplayGuard: one vector per rejection reason and the acceptance rules ----

const LOCAL: u32 = 0x0a0b_0c0d;

fn guard() -> ReplayGuard {
    ReplayGuard::new(LOCAL, [LOCAL, SENDER, PEER])
}

fn hb(generation: u64, seq: u64) -> Message {
    Message {
        generation,
        seq,
        ..heartbeat()
    }
}

#[test]
fn replay_guard_rejects_each_reason_from_decoded_vectors() {
    let keys = keys();
    let m = decode(&vectors()[0].bytes, &keys).unwrap(); // generation 7, seq 42
    let sd = decode(&vectors()[4].bytes, &keys).unwrap(); // generation 7, seq 43

    // own_message
    let mut g = ReplayGuard::new(SENDER, [SENDER, PEER]);
    assert_eq!(g.check(&m, 0), Err(RejectReason::OwnMessage));
    // unknown_node
    let mut g = ReplayGuard::new(LOCAL, [LOCAL, PEER]);
    assert_eq!(g.check(&m, 0), Err(RejectReason::UnknownNode(SENDER)));
    // replay: the same bytes twice on the same link
    let mut g = guard();
    assert_eq!(g.check(&m, 0), Ok(0));
    assert_eq!(
        g.check(&m, 0),
        Err(RejectReason::Replay { last: 42, got: 42 })
    );
    assert_eq!(g.check(&sd, 0), Ok(0));
    // old_generation: generation 8 accepted, then the generation-7 vector
    let mut g = guard();
    assert_eq!(g.check(&hb(8, 1), 0), Ok(0));
    assert_eq!(
        g.check(&m, 0),
        Err(RejectReason::OldGeneration { current: 8, got: 7 })
    );
}

#[test]
fn replay_guard_sequence_rules_per_link() {
    let mut g = guard();
    assert_eq!(g.check(&hb(5, 1), 0), Ok(0));
    assert_eq!(g.check(&hb(5, 2), 0), Ok(0));
    // Gap: 3, 4, 5 lost.
    assert_eq!(g.check(&hb(5, 6), 0), Ok(3));
    // Older seq on the same link.
    assert_eq!(
        g.check(&hb(5, 4), 0),
        Err(RejectReason::Replay { last: 6, got: 4 })
    );
    // Each link has its own counter: seq 1 on link 1 is fine.
    assert_eq!(g.check(&hb(5, 1), 1), Ok(0));
    assert_eq!(g.check(&hb(5, 3), 1), Ok(1));
    assert_eq!(g.last_seq(SENDER, 0), Some(6));
    assert_eq!(g.last_seq(SENDER, 1), Some(3));
    // Seq 0 is never accepted.
    assert_eq!(
        g.check(&hb(5, 0), 2),
        Err(RejectReason::Replay { last: 0, got: 0 })
    );
    // A rejected message changes nothing.
    assert_eq!(g.last_seq(SENDER, 2), None);
    assert_eq!(g.check(&hb(5, 7), 0), Ok(0));
}

#[test]
fn replay_guard_generation_rules() {
    let mut g = guard();
    // First message from a peer: any seq, gap 0 (it may have run long before we started).
    assert_eq!(g.check(&hb(5, 1000), 0), Ok(0));
    assert_eq!(g.generation(SENDER), Some(5));
    // Higher generation (peer restarted) resets every link: small seqs are accepted again.
    assert_eq!(g.check(&hb(6, 1), 0), Ok(0));
    assert_eq!(g.generation(SENDER), Some(6));
    assert_eq!(g.last_seq(SENDER, 0), Some(1));
    // The old generation's later messages are now refused, on any link.
    assert_eq!(
        g.check(&hb(5, 1001), 1),
        Err(RejectReason::OldGeneration { current: 6, got: 5 })
    );
    // Peers are independent.
    let peer_msg = Message {
        sender: PEER,
        ..hb(1, 1)
    };
    assert_eq!(g.check(&peer_msg, 0), Ok(0));
    assert_eq!(g.generation(PEER), Some(1));
    assert_eq!(g.generation(SENDER), Some(6));
}

#[test]
fn reject_labels_are_stable_and_listed() {
    let cases = [
        (RejectReason::OwnMessage, "own_message"),
        (RejectReason::UnknownNode(1), "unknown_node"),
        (
            RejectReason::OldGeneration { current: 2, got: 1 },
            "old_generation",
        ),
        (RejectReason::Replay { last: 2, got: 1 }, "replay"),
    ];
    for (r, label) in cases {
        assert_eq!(r.label(), label);
        assert!(RejectReason::LABELS.contains(&label));
    }
    assert_eq!(cases.len(), RejectReason::LABELS.len());
}

// ---- generation persistence ----

#[test]
fn generation_rule_on_typed_values_matches_the_file_form() {
    for (stored, secs) in [
        (None, 0u64),
        (None, 1_800_000_000),
        (Some(41u64), 0),
        (Some(1_800_000_000u64 << 20), 1_800_000_000),
        (Some(u64::MAX), 5),
    ] {
        let file = stored.map(|g| format!("{g}\n"));
        let (g, _) = next_generation(file.as_deref().map(str::as_bytes), secs * 1_000_000_000);
        assert_eq!(generation_after(stored, secs), g, "{stored:?} at {secs}s");
    }
    // A clock far in the future saturates instead of wrapping to a small generation.
    assert_eq!(generation_after(None, u64::MAX), u64::MAX);
    assert_eq!(generation_after(Some(7), u64::MAX / 2), u64::MAX);
}

#[test]
fn generation_increases_with_the_file_and_without_it() {
    let t0 = 1_800_000_000_000_000_000u64; // wall clock, ns
    let (g1, f1) = next_generation(None, t0);
    assert_eq!(g1, 1_800_000_000u64 << 20);
    assert_eq!(f1, format!("{g1}\n").into_bytes());
    // Restarts within the same second: the stored counter carries it.
    let (g2, f2) = next_generation(Some(&f1), t0 + 1000);
    assert_eq!(g2, g1 + 1);
    let (g3, f3) = next_generation(Some(&f2), t0 + 2000);
    assert_eq!(g3, g1 + 2);
    // File lost, one second later: the clock alone still gives a higher generation.
    let (g4, _) = next_generation(None, t0 + 1_000_000_000);
    assert!(g4 > g3);
    // Garbage in the file counts as lost.
    let (g5, _) = next_generation(Some(b"not a number"), t0 + 1_000_000_000);
    assert_eq!(g5, g4);
    // Clock stepped back: the stored counter still increases.
    let (g6, _) = next_generation(Some(&f3), 0);
    assert_eq!(g6, g3 + 1);
    // Whitespace around the number is accepted.
    assert_eq!(next_generation(Some(b"  41 \n"), 0).0, 42);
    // Never zero, never wraps.
    assert_eq!(next_generation(None, 0).0, 1);
    assert_eq!(
        next_generation(Some(b"18446744073709551615"), 0).0,
        u64::MAX
    );
}

#[test]
fn rtt_from_echo_subtracts_hold() {
    // We sent at 10 ms, the peer held our heartbeat 250 us, its reply arrived at 11 ms.
    let echo = Echo {
        node: LOCAL,
        send_time: Timestamp::from_nanos(10_000_000),
        hold: Duration::from_micros(250),
    };
    assert_eq!(
        rtt_from_echo(Timestamp::from_nanos(11_000_000), &echo),
        Some(Duration::from_micros(750))
    );
    assert_eq!(
        rtt_from_echo(Timestamp::from_nanos(10_100_000), &echo),
        None
    );
}
