//! Types shared by the XDP program (`hb-ebpf`) and user space (`hb-daemon`).
//!
//! Everything here is `#[repr(C)]` with fixed-width fields and explicit padding so the kernel and
//! user space agree on every byte. The `user` feature adds `aya::Pod` implementations.
#![no_std]

/// Heartbeat wire format: the fixed-offset prefix of every hb message (see `docs/protocol.md`).
///
/// All multi-byte fields are big-endian. The XDP program reads only this prefix; the rest of
/// the message (body and authentication trailer) is decoded and verified in user space.
pub mod wire {
    /// `"HBd1"`: first four bytes of every hb message.
    pub const MAGIC: [u8; 4] = *b"HBd1";
    /// Protocol version carried at [`OFF_VERSION`].
    pub const VERSION: u8 = 1;
    /// Offset of the magic.
    pub const OFF_MAGIC: usize = 0;
    /// Offset of the version byte.
    pub const OFF_VERSION: usize = 4;
    /// Offset of the message type byte.
    pub const OFF_TYPE: usize = 5;
    /// Offset of the 16-bit flags.
    pub const OFF_FLAGS: usize = 6;
    /// Offset of the 32-bit sender node id.
    pub const OFF_SENDER: usize = 8;
    /// Offset of the 16-bit total message length (header + body + trailer).
    pub const OFF_LENGTH: usize = 12;
    /// Offset of 16 reserved bits (zero).
    pub const OFF_RESERVED: usize = 14;
    /// Offset of the 64-bit generation (increases at every start of the sender).
    pub const OFF_GENERATION: usize = 16;
    /// Offset of the 64-bit sequence number (per generation, starts at 1).
    pub const OFF_SEQ: usize = 24;
    /// Offset of the 64-bit sender send time (ns, sender's CLOCK_MONOTONIC).
    pub const OFF_SEND_TIME: usize = 32;
    /// Length of the fixed header.
    pub const HEADER_LEN: usize = 40;
    /// Largest hb message on the wire; larger datagrams are rejected.
    pub const MAX_MESSAGE_LEN: usize = 1024;
}

/// Largest number of message bytes the XDP program copies into one ring-buffer record.
pub const RING_DATA_LEN: usize = 1024;

/// [`RingEvent::kind`]: a heartbeat packet delivered by XDP.
pub const EVENT_PACKET: u32 = 1;
/// [`RingEvent::kind`]: a per-peer kernel deadline passed (bpf_timer).
pub const EVENT_DEADLINE: u32 = 2;

/// [`RingEvent::flags`]: the record was submitted with a wake-up of the reader.
pub const RING_WOKE: u32 = 1;

/// With [`XdpConfig::batch`] on, a heartbeat that repeats its sender's state still wakes the
/// reader when the ring buffer holds more than this many bytes (an eighth of it), so a reader
/// that only wakes at its own deadlines never lets it fill up.
pub const RING_WAKE_BYTES: u64 = 1 << 17;

/// [`RingEvent::family`]: IPv4 source address in the first 4 bytes of `src_addr`.
pub const FAMILY_V4: u32 = 4;
/// [`RingEvent::family`]: IPv6 source address.
pub const FAMILY_V6: u32 = 6;

/// One record in the ring buffer from the XDP program to the daemon.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RingEvent {
    /// [`EVENT_PACKET`] or [`EVENT_DEADLINE`].
    pub kind: u32,
    /// Interface the packet arrived on.
    pub ifindex: u32,
    /// `bpf_ktime_get_ns()` when the XDP program saw the packet (CLOCK_MONOTONIC).
    pub ktime_ns: u64,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u32,
    /// UDP source port (host order).
    pub src_port: u16,
    /// UDP destination port (host order).
    pub dst_port: u16,
    /// Source IP address (IPv4 in the first 4 bytes).
    pub src_addr: [u8; 16],
    /// Sender node id from the header (host order), for deadline records too.
    pub sender: u32,
    /// Number of valid bytes in `data`.
    pub len: u32,
    /// [`RING_WOKE`]: this record woke the reader (without it the record was queued with
    /// `BPF_RB_NO_WAKEUP` and read later, so its read time says nothing about delivery).
    pub flags: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// The hb message (UDP payload), `len` bytes valid.
    pub data: [u8; RING_DATA_LEN],
}

/// Configuration the daemon writes into the XDP program's `CONFIG` array (index 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XdpConfig {
    /// UDP port heartbeats arrive on (host order); 0 disables delivery (everything passes).
    pub udp_port: u16,
    /// Explicit padding.
    pub _pad: u16,
    /// Non-zero: consume (XDP_DROP) heartbeats delivered to the ring buffer.
    pub consume: u32,
    /// Non-zero: the daemon's core is steady (issue 20): a heartbeat whose state fingerprint
    /// ([`PeerStats::fingerprint`]) repeats its sender's previous one is queued without waking
    /// the daemon (`BPF_RB_NO_WAKEUP`); one that differs, and every deadline record, wakes it
    /// (`BPF_RB_FORCE_WAKEUP`). Zero: every record wakes the reader as it always did.
    pub batch: u32,
    /// Explicit padding.
    pub _pad1: u32,
}

/// Key of the XDP program's per-peer `PEERS` hash map: one entry per (sender node id, interface).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PeerKey {
    /// Sender node id from the message header (host order).
    pub sender: u32,
    /// Interface the heartbeats arrive on.
    pub ifindex: u32,
}

/// Value of the XDP program's per-peer `PEERS` hash map.
///
/// Sequence numbers are per sender per link. The program remembers the last sequence number
/// (and generation) per key; a heartbeat whose sequence number jumps ahead by more than one adds
/// the numbers skipped to `seq_gaps`. A new generation (the sender restarted) restarts the
/// tracking without counting a gap. Only heartbeats that parse (magic, version, length) count.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Heartbeats seen (delivered or not).
    pub packets: u64,
    /// UDP payload bytes of those heartbeats.
    pub bytes: u64,
    /// `bpf_ktime_get_ns()` of the latest heartbeat (CLOCK_MONOTONIC).
    pub last_arrival_ns: u64,
    /// Sequence numbers skipped in total (lost or not yet arrived).
    pub seq_gaps: u64,
    /// Highest sequence number seen in `generation`.
    pub last_seq: u64,
    /// Generation of `last_seq`.
    pub generation: u64,
    /// FNV-1a of the state the latest delivered heartbeat carried: its type, flags, ping counts,
    /// generation, status, counts, haresources digest and group states (everything the
    /// receiver's decisions read except the echoes, whose send times change every time).
    pub fingerprint: u64,
}

/// Value of the XDP program's `DEADLINES` map (kernel-side deadline, issue 10), keyed by
/// [`PeerKey`]. The daemon writes one entry per (sender, interface) to watch, with
/// `deadline_ns` set and everything else zero. The program (re)starts the entry's timer at every
/// heartbeat it delivers for that key; when `deadline_ns` passes without one, it posts an
/// [`EVENT_DEADLINE`] record. A write from user space cancels the entry's running timer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerDeadline {
    /// The kernel's `struct bpf_timer` (opaque; zero when written from user space).
    pub timer: [u64; 2],
    /// Time after a delivered heartbeat at which the deadline record is posted, ns.
    pub deadline_ns: u64,
    /// Set by the program once it has initialised the timer.
    pub armed: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// Global counters kept by the XDP program (index into the `COUNTERS` per-CPU array).
pub mod counter {
    /// Packets seen by the program.
    pub const SEEN: u32 = 0;
    /// Heartbeats delivered to the ring buffer.
    pub const DELIVERED: u32 = 1;
    /// Heartbeats passed on because the ring buffer was full.
    pub const RING_FULL: u32 = 2;
    /// Heartbeats the program could not copy into a ring-buffer record (passed). (Datagrams
    /// to the heartbeat port that are not hb messages are [`DROPPED`].)
    pub const PARSE_FAIL: u32 = 3;
    /// Packets not addressed to the heartbeat port (passed).
    pub const NOT_HEARTBEAT: u32 = 4;
    /// Heartbeats consumed (`XDP_DROP`) after delivery.
    pub const CONSUMED: u32 = 5;
    /// Per-peer counter entries that could not be created (map full).
    pub const PEERS_FULL: u32 = 6;
    /// Kernel deadline records posted (bpf_timer expiries).
    pub const DEADLINES: u32 = 7;
    /// Datagrams to the heartbeat port that are not hb messages (too short or long for one,
    /// truncated, wrong magic, version or length), dropped (`XDP_DROP`): hb owns the port, and
    /// what cannot be a heartbeat never costs the daemon a wake-up.
    pub const DROPPED: u32 = 8;
    /// Heartbeats delivered without waking the daemon ([`super::XdpConfig::batch`]).
    pub const BATCHED: u32 = 9;
    /// Datagrams to the heartbeat port (and deadline expiries) whose interface had no
    /// [`IfaceCounters`](super::IfaceCounters) entry and got none (the `IFACES` map full):
    /// counted in the global counters only.
    pub const IFACES_FULL: u32 = 10;
    /// Number of counters.
    pub const COUNT: u32 = 11;
}

/// Name of the XDP program's per-interface counters map: a per-CPU hash keyed by the ingress
/// ifindex (`u32`), value [`IfaceCounters`], at most [`IFACES_MAX`] interfaces.
pub const IFACES_MAP: &str = "IFACES";
/// Entries of [`IFACES_MAP`]: interfaces beyond these are counted in the global counters only
/// (and under [`counter::IFACES_FULL`]).
pub const IFACES_MAX: u32 = 256;

/// Value of the XDP program's per-interface counters map ([`IFACES_MAP`]): the global counters
/// ([`counter`]) for the datagrams to the heartbeat port that arrived on one interface, indexed
/// the same way (`counts[counter::DELIVERED as usize]`). Per CPU: user space sums the CPUs'
/// values. `SEEN` and `NOT_HEARTBEAT` stay 0 here: other traffic is counted program-wide only,
/// so that it never pays for a per-interface lookup. `PEERS_FULL` and `DEADLINES` count per
/// interface too (the peer key's interface);
/// `RING_FULL` counts only heartbeats here (a deadline record the ring buffer could not take
/// counts in the global counter only); `IFACES_FULL` stays 0 here.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceCounters {
    /// One count per [`counter`] index.
    pub counts: [u64; counter::COUNT as usize],
}

impl IfaceCounters {
    /// The count at a [`counter`] index (0 for an index out of range).
    pub fn get(&self, index: u32) -> u64 {
        self.counts.get(index as usize).copied().unwrap_or(0)
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), only integer fields and arrays of integers, no padding (checked by the
    // size assertions below), so every bit pattern is valid.
    unsafe impl aya::Pod for super::RingEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::XdpConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PeerKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PeerStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PeerDeadline {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::IfaceCounters {}
}

const _: () = assert!(core::mem::size_of::<RingEvent>() == 56 + RING_DATA_LEN);
// The XDP program drops datagrams to the heartbeat port longer than a ring record can carry as
// "not an hb message": that holds only while no hb message is longer.
const _: () = assert!(RING_DATA_LEN == wire::MAX_MESSAGE_LEN);
const _: () = assert!(core::mem::size_of::<XdpConfig>() == 16);
const _: () = assert!(core::mem::size_of::<PeerKey>() == 8);
const _: () = assert!(core::mem::size_of::<PeerStats>() == 56);
const _: () = assert!(core::mem::size_of::<PeerDeadline>() == 32);
const _: () = assert!(core::mem::size_of::<IfaceCounters>() == 8 * counter::COUNT as usize);
