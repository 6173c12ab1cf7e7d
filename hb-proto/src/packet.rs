//! The wire codec: [`Message`] <-> bytes, with the `authkeys` trailer. Replay protection is
//! [`crate::replay`]'s, the generation rule [`crate::generation`]'s.
//!
//! The byte layout is drawn in `docs/protocol.md`. In short, big-endian everywhere:
//!
//! ```text
//! 0   magic "HBd1" | version | type | flags(16)
//! 8   sender(32) | total length(16) | ping counts(16): reachable(8) configured(8)
//! 16  generation(64)
//! 24  seq(64)
//! 32  send_time(64)
//! 40  status(8) | echo count(8) | group count(16) | groups_digest(32)
//! 48  echoes: count x { node(32) send_time(64) hold_ns(64) }          20 bytes each
//! ..  groups: count x { group(16) holding(8) flags(8) }               4 bytes each
//! ..  trailer: key id(8) | method(8) | digest length(8) | digest
//! ```
//!
//! [`decode`] reads only the header and the counts before it checks the digest; every other
//! field is interpreted after authentication, so forged or corrupted bytes are counted as
//! `auth_failed`, and `malformed` means an authenticated sender wrote something this version does
//! not understand.

use std::time::Duration;

use hb_common::wire;

use crate::{
    Timestamp,
    auth::{self, AuthError},
    config::{AuthKey, AuthKeys, AuthMethod},
    message::{Echo, GroupState, Holding, Message, MessageKind, NodeStatus, PingCounts},
};

/// Type byte of a heartbeat.
pub const TYPE_HEARTBEAT: u8 = 1;
/// Type byte of a shutdown notice.
pub const TYPE_SHUTDOWN: u8 = 2;

/// Offset of the node status byte (first byte of the body).
pub const OFF_STATUS: usize = wire::HEADER_LEN;
/// Offset of the echo count byte.
pub const OFF_ECHO_COUNT: usize = wire::HEADER_LEN + 1;
/// Offset of the 16-bit group count.
pub const OFF_GROUP_COUNT: usize = wire::HEADER_LEN + 2;
/// Offset of the 32-bit groups digest.
pub const OFF_GROUPS_DIGEST: usize = wire::HEADER_LEN + 4;
/// Offset of the first echo.
pub const OFF_ECHOES: usize = wire::HEADER_LEN + BODY_FIXED_LEN;
/// Length of the body's fixed part (status, counts, groups digest).
pub const BODY_FIXED_LEN: usize = 8;
/// Length of one echo: node id, echoed send time, hold time in ns.
pub const ECHO_LEN: usize = 20;
/// Length of one group state: group index, holding, flag bits.
pub const GROUP_LEN: usize = 4;
/// Length of the trailer before the digest: key id, method, digest length.
pub const TRAILER_FIXED_LEN: usize = 3;
/// Smallest possible message: header, body without echoes or groups, CRC trailer.
pub const MIN_MESSAGE_LEN: usize = wire::HEADER_LEN + BODY_FIXED_LEN + TRAILER_FIXED_LEN + 4;

/// Status byte: [`NodeStatus::Init`].
pub const STATUS_INIT: u8 = 0;
/// Status byte: [`NodeStatus::Active`].
pub const STATUS_ACTIVE: u8 = 1;
/// Status byte: [`NodeStatus::Stopping`].
pub const STATUS_STOPPING: u8 = 2;

/// Holding byte: [`Holding::None`].
pub const HOLDING_NONE: u8 = 0;
/// Holding byte: [`Holding::Starting`].
pub const HOLDING_STARTING: u8 = 1;
/// Holding byte: [`Holding::Held`].
pub const HOLDING_HELD: u8 = 2;
/// Holding byte: [`Holding::Stopping`].
pub const HOLDING_STOPPING: u8 = 3;

/// Header flag bit: the ping counts (the 16 bits at `OFF_RESERVED`: reachable, configured)
/// are present ([`Message::ping`]). A sender without ping nodes, or from before ping counts
/// existed, leaves it and the two bytes 0.
pub const FLAG_PING: u16 = 0x0001;
/// Header flag bit: [`PingCounts::yielding`] (only with [`FLAG_PING`]).
pub const FLAG_PING_YIELDING: u16 = 0x0002;

/// Group flag bit: [`GroupState::failed`].
pub const GROUP_FAILED: u8 = 0x01;
/// Group flag bit: [`GroupState::standby`].
pub const GROUP_STANDBY: u8 = 0x02;
/// Group flag bit: [`GroupState::wants`].
pub const GROUP_WANTS: u8 = 0x04;
const GROUP_FLAGS_KNOWN: u8 = GROUP_FAILED | GROUP_STANDBY | GROUP_WANTS;

/// Why a message could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The message would be longer than `MAX_MESSAGE_LEN`.
    #[error("message of {len} bytes exceeds the maximum of {max}", max = wire::MAX_MESSAGE_LEN)]
    TooLong {
        /// Length it would have had.
        len: usize,
    },
    /// More echoes than the 8-bit count can carry.
    #[error("{0} echoes do not fit the 8-bit echo count")]
    TooManyEchoes(usize),
    /// More group states than the 16-bit count can carry.
    #[error("{0} group states do not fit the 16-bit group count")]
    TooManyGroups(usize),
    /// An echo's hold time does not fit 64 bits of nanoseconds.
    #[error("echo hold time {0:?} does not fit 64 bits of nanoseconds")]
    HoldOverflow(Duration),
    /// More reachable ping nodes than configured ones.
    #[error("ping counts {0:?}: more reachable than configured")]
    PingCounts(PingCounts),
    /// The signing key could not be used.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// Why received bytes are not an hb message this node accepts. Checked in the order of the
/// variants below except where noted in `docs/protocol.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The first four bytes are not `"HBd1"`.
    #[error("bad magic")]
    BadMagic,
    /// The version byte is not [`wire::VERSION`].
    #[error("unsupported protocol version {0}")]
    BadVersion(u8),
    /// The message ends before its header or before the structure its counts declare.
    #[error("truncated message")]
    Truncated,
    /// The datagram is longer than `MAX_MESSAGE_LEN`.
    #[error("oversized message of {0} bytes")]
    Oversized(usize),
    /// The header's total length disagrees with the datagram's length.
    #[error("header says {header} bytes, datagram has {actual}")]
    LengthMismatch {
        /// Length in the header.
        header: u16,
        /// Length of the datagram.
        actual: usize,
    },
    /// The type byte is not a known message type.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A field holds a value this version does not define.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// The trailer names a key id that is not in `authkeys`.
    #[error("unknown authentication key id {0}")]
    UnknownKey(u8),
    /// The trailer's method is not the method `authkeys` gives that key id.
    #[error("key {key} is {expected:?} in authkeys, message says method code {got}")]
    MethodMismatch {
        /// Key id.
        key: u8,
        /// The key's method in `authkeys`.
        expected: AuthMethod,
        /// Method code in the message.
        got: u8,
    },
    /// The digest does not verify.
    #[error("authentication failed")]
    AuthFailed,
}

impl DecodeError {
    /// Every label [`DecodeError::reason`] can return, for registering metrics up front.
    pub const REASONS: [&'static str; 10] = [
        "bad_magic",
        "bad_version",
        "truncated",
        "oversized",
        "length_mismatch",
        "unknown_type",
        "malformed",
        "unknown_key",
        "method_mismatch",
        "auth_failed",
    ];

    /// A stable snake_case label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::BadMagic => "bad_magic",
            DecodeError::BadVersion(_) => "bad_version",
            DecodeError::Truncated => "truncated",
            DecodeError::Oversized(_) => "oversized",
            DecodeError::LengthMismatch { .. } => "length_mismatch",
            DecodeError::UnknownType(_) => "unknown_type",
            DecodeError::Malformed(_) => "malformed",
            DecodeError::UnknownKey(_) => "unknown_key",
            DecodeError::MethodMismatch { .. } => "method_mismatch",
            DecodeError::AuthFailed => "auth_failed",
        }
    }
}

/// The fixed 40-byte header, read without authentication (for counters and for finding the
/// sender of a message that then fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message type.
    pub kind: MessageKind,
    /// Flag bits ([`FLAG_PING`], [`FLAG_PING_YIELDING`]; undefined bits are ignored on
    /// receipt).
    pub flags: u16,
    /// Sender node id.
    pub sender: u32,
    /// Total length (equal to the datagram's length once `peek_header` accepted it).
    pub length: u16,
    /// Sender generation.
    pub generation: u64,
    /// Sequence number.
    pub seq: u64,
    /// Sender send time.
    pub send_time: Timestamp,
}

fn kind_code(kind: MessageKind) -> u8 {
    match kind {
        MessageKind::Heartbeat => TYPE_HEARTBEAT,
        MessageKind::Shutdown => TYPE_SHUTDOWN,
    }
}

fn status_code(status: NodeStatus) -> u8 {
    match status {
        NodeStatus::Init => STATUS_INIT,
        NodeStatus::Active => STATUS_ACTIVE,
        NodeStatus::Stopping => STATUS_STOPPING,
    }
}

fn holding_code(holding: Holding) -> u8 {
    match holding {
        Holding::None => HOLDING_NONE,
        Holding::Starting => HOLDING_STARTING,
        Holding::Held => HOLDING_HELD,
        Holding::Stopping => HOLDING_STOPPING,
    }
}

/// The length [`encode`] gives a message with `echoes` echoes and `groups` group states
/// signed with `method` (whether or not that exceeds `MAX_MESSAGE_LEN`).
pub fn encoded_len(echoes: usize, groups: usize, method: AuthMethod) -> usize {
    OFF_ECHOES
        .saturating_add(echoes.saturating_mul(ECHO_LEN))
        .saturating_add(groups.saturating_mul(GROUP_LEN))
        .saturating_add(TRAILER_FIXED_LEN + method.digest_len())
}

/// Encode and sign `msg` with `key` (normally `authkeys`' active key).
pub fn encode(msg: &Message, key: &AuthKey) -> Result<Vec<u8>, EncodeError> {
    let echo_count =
        u8::try_from(msg.echoes.len()).map_err(|_| EncodeError::TooManyEchoes(msg.echoes.len()))?;
    let group_count = u16::try_from(msg.groups.len())
        .map_err(|_| EncodeError::TooManyGroups(msg.groups.len()))?;
    let total = encoded_len(msg.echoes.len(), msg.groups.len(), key.method);
    let total16 = match u16::try_from(total) {
        Ok(t) if total <= wire::MAX_MESSAGE_LEN => t,
        _ => return Err(EncodeError::TooLong { len: total }),
    };

    let (flags, counts) = match msg.ping {
        None => (0u16, [0u8; 2]),
        Some(p) => {
            if p.reachable > p.configured {
                return Err(EncodeError::PingCounts(p));
            }
            let yielding = if p.yielding { FLAG_PING_YIELDING } else { 0 };
            (FLAG_PING | yielding, [p.reachable, p.configured])
        }
    };
    let mut buf = Vec::with_capacity(total);
    buf.extend_from_slice(&wire::MAGIC);
    buf.push(wire::VERSION);
    buf.push(kind_code(msg.kind));
    buf.extend_from_slice(&flags.to_be_bytes());
    buf.extend_from_slice(&msg.sender.to_be_bytes());
    buf.extend_from_slice(&total16.to_be_bytes());
    buf.extend_from_slice(&counts);
    buf.extend_from_slice(&msg.generation.to_be_bytes());
    buf.extend_from_slice(&msg.seq.to_be_bytes());
    buf.extend_from_slice(&msg.send_time.as_nanos().to_be_bytes());

    buf.push(status_code(msg.status));
    buf.push(echo_count);
    buf.extend_from_slice(&group_count.to_be_bytes());
    buf.extend_from_slice(&msg.groups_digest.to_be_bytes());
    for echo in &msg.echoes {
        let hold = u64::try_from(echo.hold.as_nanos())
            .map_err(|_| EncodeError::HoldOverflow(echo.hold))?;
        buf.extend_from_slice(&echo.node.to_be_bytes());
        buf.extend_from_slice(&echo.send_time.as_nanos().to_be_bytes());
        buf.extend_from_slice(&hold.to_be_bytes());
    }
    for g in &msg.groups {
        let mut flags = 0u8;
        if g.failed {
            flags |= GROUP_FAILED;
        }
        if g.standby {
            flags |= GROUP_STANDBY;
        }
        if g.wants {
            flags |= GROUP_WANTS;
        }
        buf.extend_from_slice(&g.group.to_be_bytes());
        buf.push(holding_code(g.holding));
        buf.push(flags);
    }

    buf.push(key.id);
    buf.push(key.method.wire_code());
    // digest_len() is at most 32.
    buf.push(key.method.digest_len() as u8);
    let digest = auth::sign(key, &buf)?;
    buf.extend_from_slice(digest.as_bytes());
    debug_assert_eq!(buf.len(), total);
    Ok(buf)
}

/// Bounds-checked big-endian reads; every miss is [`DecodeError::Truncated`].
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn array<const N: usize>(&self, off: usize) -> Result<[u8; N], DecodeError> {
        let end = off.checked_add(N).ok_or(DecodeError::Truncated)?;
        self.bytes
            .get(off..end)
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or(DecodeError::Truncated)
    }
    fn u8(&self, off: usize) -> Result<u8, DecodeError> {
        self.bytes.get(off).copied().ok_or(DecodeError::Truncated)
    }
    fn u16(&self, off: usize) -> Result<u16, DecodeError> {
        self.array(off).map(u16::from_be_bytes)
    }
    fn u32(&self, off: usize) -> Result<u32, DecodeError> {
        self.array(off).map(u32::from_be_bytes)
    }
    fn u64(&self, off: usize) -> Result<u64, DecodeError> {
        self.array(off).map(u64::from_be_bytes)
    }
}

/// Check and read the fixed header without authenticating: size limits, magic, version, total
/// length, type. Any byte string gives `Ok` or an error, never a panic.
pub fn peek_header(bytes: &[u8]) -> Result<Header, DecodeError> {
    if bytes.len() > wire::MAX_MESSAGE_LEN {
        return Err(DecodeError::Oversized(bytes.len()));
    }
    if bytes.len() < wire::HEADER_LEN {
        return Err(DecodeError::Truncated);
    }
    let r = Reader { bytes };
    if r.array::<4>(wire::OFF_MAGIC)? != wire::MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = r.u8(wire::OFF_VERSION)?;
    if version != wire::VERSION {
        return Err(DecodeError::BadVersion(version));
    }
    let length = r.u16(wire::OFF_LENGTH)?;
    if usize::from(length) != bytes.len() {
        return Err(DecodeError::LengthMismatch {
            header: length,
            actual: bytes.len(),
        });
    }
    let kind = match r.u8(wire::OFF_TYPE)? {
        TYPE_HEARTBEAT => MessageKind::Heartbeat,
        TYPE_SHUTDOWN => MessageKind::Shutdown,
        other => return Err(DecodeError::UnknownType(other)),
    };
    Ok(Header {
        kind,
        flags: r.u16(wire::OFF_FLAGS)?,
        sender: r.u32(wire::OFF_SENDER)?,
        length,
        generation: r.u64(wire::OFF_GENERATION)?,
        seq: r.u64(wire::OFF_SEQ)?,
        send_time: Timestamp::from_nanos(r.u64(wire::OFF_SEND_TIME)?),
    })
}

/// Decode and authenticate `bytes` against `keys` (any key listed verifies, so keys can be
/// rotated). Any byte string gives `Ok` or an error, never a panic. Replay, generation and
/// unknown-sender checks are [`crate::replay::ReplayGuard`]'s.
pub fn decode(bytes: &[u8], keys: &AuthKeys) -> Result<Message, DecodeError> {
    let header = peek_header(bytes)?;
    let r = Reader { bytes };

    // Counts locate the trailer; nothing else in the body is read before authentication.
    let echo_count = usize::from(r.u8(OFF_ECHO_COUNT)?);
    let group_count = usize::from(r.u16(OFF_GROUP_COUNT)?);
    let off_groups = OFF_ECHOES + echo_count * ECHO_LEN;
    let off_trailer = off_groups + group_count * GROUP_LEN;
    let key_id = r.u8(off_trailer)?;
    let method_code = r.u8(off_trailer + 1)?;
    let digest_len = usize::from(r.u8(off_trailer + 2)?);
    let off_digest = off_trailer + TRAILER_FIXED_LEN;
    let end = off_digest + digest_len;
    if end > bytes.len() {
        return Err(DecodeError::Truncated);
    }
    if end < bytes.len() {
        return Err(DecodeError::Malformed("bytes after the digest"));
    }

    let key = keys
        .keys
        .get(&key_id)
        .ok_or(DecodeError::UnknownKey(key_id))?;
    if method_code != key.method.wire_code() {
        return Err(DecodeError::MethodMismatch {
            key: key_id,
            expected: key.method,
            got: method_code,
        });
    }
    if digest_len != key.method.digest_len() {
        return Err(DecodeError::Malformed(
            "digest length does not match the method",
        ));
    }
    let (signed, digest) = bytes.split_at(off_digest);
    if !auth::verify(key, signed, digest) {
        return Err(DecodeError::AuthFailed);
    }

    // Authenticated: interpret the body.
    let status = match r.u8(OFF_STATUS)? {
        STATUS_INIT => NodeStatus::Init,
        STATUS_ACTIVE => NodeStatus::Active,
        STATUS_STOPPING => NodeStatus::Stopping,
        _ => return Err(DecodeError::Malformed("unknown node status")),
    };
    let groups_digest = r.u32(OFF_GROUPS_DIGEST)?;
    let ping = if header.flags & FLAG_PING != 0 {
        let [reachable, configured] = r.array::<2>(wire::OFF_RESERVED)?;
        if reachable > configured {
            return Err(DecodeError::Malformed(
                "more reachable ping nodes than configured",
            ));
        }
        Some(PingCounts {
            reachable,
            configured,
            yielding: header.flags & FLAG_PING_YIELDING != 0,
        })
    } else {
        None
    };
    let mut echoes = Vec::with_capacity(echo_count);
    for i in 0..echo_count {
        let off = OFF_ECHOES + i * ECHO_LEN;
        echoes.push(Echo {
            node: r.u32(off)?,
            send_time: Timestamp::from_nanos(r.u64(off + 4)?),
            hold: Duration::from_nanos(r.u64(off + 12)?),
        });
    }
    let mut groups = Vec::with_capacity(group_count);
    for i in 0..group_count {
        let off = off_groups + i * GROUP_LEN;
        let holding = match r.u8(off + 2)? {
            HOLDING_NONE => Holding::None,
            HOLDING_STARTING => Holding::Starting,
            HOLDING_HELD => Holding::Held,
            HOLDING_STOPPING => Holding::Stopping,
            _ => return Err(DecodeError::Malformed("unknown group holding state")),
        };
        let flags = r.u8(off + 3)?;
        if flags & !GROUP_FLAGS_KNOWN != 0 {
            return Err(DecodeError::Malformed("unknown group flag bits"));
        }
        groups.push(GroupState {
            group: r.u16(off)?,
            holding,
            failed: flags & GROUP_FAILED != 0,
            standby: flags & GROUP_STANDBY != 0,
            wants: flags & GROUP_WANTS != 0,
        });
    }

    Ok(Message {
        kind: header.kind,
        sender: header.sender,
        generation: header.generation,
        seq: header.seq,
        send_time: header.send_time,
        groups_digest,
        status,
        echoes,
        groups,
        ping,
    })
}
