//! hb's XDP program.
//!
//! Parses Ethernet (with up to two VLAN tags), IPv4 or IPv6 and UDP; a datagram to the
//! configured heartbeat port that carries hb's magic and version is a heartbeat. Each heartbeat
//! is stamped with `bpf_ktime_get_ns()`, counted per (sender, interface) in `PEERS` (packets,
//! bytes, last arrival, sequence gaps), and copied with its source address and interface into the
//! `EVENTS` ring buffer for `hbd`. While the daemon sets `XdpConfig::batch`, a heartbeat whose
//! state fingerprint (`PeerStats::fingerprint`) repeats its sender's previous one is queued
//! without waking the daemon; any other record forces a wake-up. A delivered heartbeat is consumed (`XDP_DROP`) when the daemon
//! asks for it. hb owns the heartbeat port: a datagram to it that cannot be an hb message (too
//! short or too long for one, truncated, wrong magic, version or length) is dropped and counted
//! (`counter::DROPPED`), so a flood of junk never reaches the daemon's socket. Everything else
//! (other ports, other protocols, IP fragments, heartbeats the ring buffer cannot take) passes
//! untouched and is counted. The counts of datagrams to the heartbeat port are kept twice:
//! program-wide (`COUNTERS`) and per ingress interface (`IFACES`). The program never writes to
//! a packet.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{
        BPF_NOEXIST, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, bpf_timer,
        xdp_action,
    },
    btf_maps::HashMap as BtfHashMap,
    cty::c_void,
    helpers::{bpf_timer_init, bpf_timer_set_callback, bpf_timer_start},
    macros::{btf_map, map, xdp},
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::XdpContext,
};
use hb_common::{
    EVENT_DEADLINE, EVENT_PACKET, FAMILY_V4, FAMILY_V6, IFACES_MAX, IfaceCounters, PeerDeadline,
    PeerKey, PeerStats, RING_DATA_LEN, RING_WAKE_BYTES, RING_WOKE, RingEvent, XdpConfig, counter,
    wire,
};

/// Heartbeats for the daemon (1 MiB).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Index 0: the daemon's configuration.
#[map]
static CONFIG: Array<XdpConfig> = Array::with_max_entries(1, 0);

/// Global counters, see `hb_common::counter`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Per-interface counters (`hb_common::IFACES_MAP`): the global counters split by ingress
/// ifindex, per CPU.
#[map]
static IFACES: PerCpuHashMap<u32, IfaceCounters> = PerCpuHashMap::with_max_entries(IFACES_MAX, 0);

/// Per-(sender, interface) counters.
#[map]
static PEERS: HashMap<PeerKey, PeerStats> = HashMap::with_max_entries(1024, 0);

/// Kernel view of `hb_common::PeerDeadline`: the same bytes, with the timer typed as
/// `struct bpf_timer` so the map's BTF lets the kernel find it.
#[repr(C)]
pub struct Deadline {
    timer: bpf_timer,
    deadline_ns: u64,
    armed: u32,
    _pad: u32,
}

const _: () = assert!(core::mem::size_of::<Deadline>() == core::mem::size_of::<PeerDeadline>());

/// Per-(sender, interface) kernel deadlines set by the daemon (issue 10). BTF-defined because
/// the value holds a `bpf_timer`.
#[btf_map]
static DEADLINES: BtfHashMap<PeerKey, Deadline, 1024> = BtfHashMap::new();

/// CLOCK_MONOTONIC for `bpf_timer_init`.
const CLOCK_MONOTONIC: u64 = 1;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const VLAN_HLEN: usize = 4;
const IPV6_HLEN: usize = 40;
const IPPROTO_UDP: u8 = 17;
const UDP_HLEN: usize = 8;
/// The body's fixed part (status, echo count, group count, groups digest) follows the header
/// (`hb_proto::packet::BODY_FIXED_LEN`); then the echoes (`ECHO_LEN` each), then the group
/// states (`GROUP_LEN` each).
const BODY_FIXED_LEN: usize = 8;
const OFF_ECHO_COUNT: usize = wire::HEADER_LEN + 1;
const OFF_GROUP_COUNT: usize = wire::HEADER_LEN + 2;
const ECHO_LEN: usize = 20;
const GROUP_LEN: usize = 4;
/// Group states beyond this many bytes are not fingerprinted: such a message always wakes.
const MAX_GROUP_BYTES: usize = 256;

#[xdp]
pub fn hb_xdp(ctx: XdpContext) -> u32 {
    bump(counter::SEEN);
    match try_hb_xdp(&ctx) {
        Ok(action) => action,
        Err(()) => xdp_action::XDP_PASS,
    }
}

#[inline(always)]
fn bump(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot owned by this CPU for the duration of the program.
        unsafe { *slot += 1 };
    }
}

/// The `IFACES` entry of interface `ifindex` (this CPU's value), created on its first packet;
/// null when the map is full (counted under `counter::IFACES_FULL`): then only the global
/// counters count, and the packet is handled as ever. Looked up once per datagram to the
/// heartbeat port (other traffic never pays for it).
#[inline(always)]
fn iface_slot(ifindex: u32) -> *mut IfaceCounters {
    if let Some(p) = IFACES.get_ptr_mut(&ifindex) {
        return p;
    }
    // Fails when the map is full, or when another CPU created the entry meanwhile (this CPU's
    // value in it is zero then, as in a new one): the lookup below tells which.
    let _ = IFACES.insert(&ifindex, &IfaceCounters::default(), BPF_NOEXIST as u64);
    match IFACES.get_ptr_mut(&ifindex) {
        Some(p) => p,
        None => {
            bump(counter::IFACES_FULL);
            core::ptr::null_mut()
        }
    }
}

/// Bumps global counter `index` and the same counter in `slot` (an [`iface_slot`], or null).
#[inline(always)]
fn count(slot: *mut IfaceCounters, index: u32) {
    bump(index);
    if slot.is_null() {
        return;
    }
    // SAFETY: a non-null `slot` points at this CPU's value of a per-CPU map entry, valid for
    // the whole program run; nothing else writes it meanwhile.
    if let Some(c) = unsafe { (*slot).counts.get_mut(index as usize) } {
        *c += 1;
    }
}

/// Bounds-checked pointer to a `T` at `offset` into the packet.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*const T, ()> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return Err(());
    }
    Ok((start + offset) as *const T)
}

/// Reads a `T` (integer or byte array) at `offset`, bounds-checked.
#[inline(always)]
fn read<T: Copy>(ctx: &XdpContext, offset: usize) -> Result<T, ()> {
    let p = ptr_at::<T>(ctx, offset)?;
    // SAFETY: ptr_at checked `offset + size_of::<T>()` against data_end; T is plain data.
    Ok(unsafe { core::ptr::read_unaligned(p) })
}

/// Where the UDP header is and who sent the datagram.
struct Udp {
    offset: usize,
    family: u32,
    src: [u8; 16],
}

#[inline(always)]
fn parse_l3(ctx: &XdpContext) -> Result<Option<Udp>, ()> {
    let mut offset = ETH_HLEN;
    let mut ethertype = u16::from_be(read::<u16>(ctx, 12)?);
    // Up to two VLAN tags (802.1Q, or 802.1ad outer with 802.1Q inner).
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = u16::from_be(read::<u16>(ctx, offset + 2)?);
        offset += VLAN_HLEN;
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            ethertype = u16::from_be(read::<u16>(ctx, offset + 2)?);
            offset += VLAN_HLEN;
        }
    }
    let mut src = [0u8; 16];
    if ethertype == ETH_P_IP {
        let vihl: u8 = read(ctx, offset)?;
        let ihl = ((vihl & 0x0f) as usize) * 4;
        let proto: u8 = read(ctx, offset + 9)?;
        // Fragments (more-fragments flag or an offset) are left to the stack to reassemble.
        let frag = u16::from_be(read::<u16>(ctx, offset + 6)?);
        if vihl >> 4 != 4 || proto != IPPROTO_UDP || ihl < 20 || frag & 0x3fff != 0 {
            return Ok(None);
        }
        let v4: [u8; 4] = read(ctx, offset + 12)?;
        src[0] = v4[0];
        src[1] = v4[1];
        src[2] = v4[2];
        src[3] = v4[3];
        Ok(Some(Udp {
            offset: offset + ihl,
            family: FAMILY_V4,
            src,
        }))
    } else if ethertype == ETH_P_IPV6 {
        let next: u8 = read(ctx, offset + 6)?;
        if next != IPPROTO_UDP {
            // Extension headers are not followed: such a datagram takes the socket path.
            return Ok(None);
        }
        src = read(ctx, offset + 8)?;
        Ok(Some(Udp {
            offset: offset + IPV6_HLEN,
            family: FAMILY_V6,
            src,
        }))
    } else {
        Ok(None)
    }
}

/// Counts one heartbeat of `key` and its sequence gap.
#[inline(always)]
fn count_peer(key: &PeerKey, len: u64, now: u64, generation: u64, seq: u64) {
    match PEERS.get_ptr_mut(key) {
        Some(p) => {
            // SAFETY: `p` points at the map's value for `key`; heartbeats of one sender on one
            // interface are processed one at a time (one RX queue per flow).
            unsafe {
                (*p).packets += 1;
                (*p).bytes += len;
                (*p).last_arrival_ns = now;
                if generation > (*p).generation {
                    (*p).generation = generation;
                    (*p).last_seq = seq;
                } else if generation == (*p).generation && seq > (*p).last_seq {
                    (*p).seq_gaps += seq - (*p).last_seq - 1;
                    (*p).last_seq = seq;
                }
            }
        }
        None => {
            let stats = PeerStats {
                packets: 1,
                bytes: len,
                last_arrival_ns: now,
                seq_gaps: 0,
                last_seq: seq,
                generation,
                fingerprint: 0,
            };
            if PEERS.insert(key, &stats, BPF_NOEXIST as u64).is_err() {
                count(iface_slot(key.ifindex), counter::PEERS_FULL);
            }
        }
    }
}

/// Timer callback: `deadline_ns` passed since the last heartbeat delivered for `key`. Posts an
/// `EVENT_DEADLINE` record; says nothing about liveness beyond that.
unsafe extern "C" fn deadline_passed(
    _map: *mut c_void,
    key: *mut c_void,
    _value: *mut c_void,
) -> i32 {
    if key.is_null() {
        bump(counter::DEADLINES);
        return 0;
    }
    // SAFETY: the kernel passes the timer's map key, a PeerKey.
    let key = unsafe { *(key as *const PeerKey) };
    count(iface_slot(key.ifindex), counter::DEADLINES);
    if let Some(mut entry) = EVENTS.reserve::<RingEvent>(0) {
        let ev = entry.as_mut_ptr();
        // SAFETY: `ev` points at a reserved, exclusively owned RingEvent slot; only the
        // header is written (`len` 0: no data).
        unsafe {
            (*ev).kind = EVENT_DEADLINE;
            (*ev).ifindex = key.ifindex;
            (*ev).ktime_ns = aya_ebpf::helpers::bpf_ktime_get_ns();
            (*ev).family = 0;
            (*ev).src_port = 0;
            (*ev).dst_port = 0;
            (*ev).src_addr = [0; 16];
            (*ev).sender = key.sender;
            (*ev).len = 0;
            (*ev).flags = RING_WOKE;
            (*ev)._pad = 0;
        }
        // Forced: heartbeats queued without a wake-up (XdpConfig::batch) would keep the
        // default, adaptive wake-up from firing.
        entry.submit(BPF_RB_FORCE_WAKEUP as u64);
    } else {
        bump(counter::RING_FULL);
    }
    0
}

/// (Re)starts the deadline timer of `key`, if the daemon set one.
#[inline(always)]
fn rearm_deadline(key: &PeerKey) {
    let Some(d) = DEADLINES.get_ptr_mut(key) else {
        return;
    };
    let map = core::ptr::from_ref(&DEADLINES).cast_mut().cast::<c_void>();
    // SAFETY: `d` points at the map's value for `key`; the timer helpers take pointers into it.
    unsafe {
        let timer = core::ptr::addr_of_mut!((*d).timer);
        if core::ptr::read_volatile(core::ptr::addr_of!((*d).armed)) == 0 {
            // -EBUSY: already initialised (by another CPU): fine either way.
            let _ = bpf_timer_init(timer, map, CLOCK_MONOTONIC);
            let cb: unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_void) -> i32 =
                deadline_passed;
            if bpf_timer_set_callback(timer, cb as *mut c_void) == 0 {
                core::ptr::write_volatile(core::ptr::addr_of_mut!((*d).armed), 1);
            }
        }
        let ns = core::ptr::read_volatile(core::ptr::addr_of!((*d).deadline_ns));
        if ns != 0 {
            bpf_timer_start(timer, ns, 0);
        }
    }
}

/// FNV-1a over the state a message carries (see [`PeerStats::fingerprint`]): header bytes 5..8
/// (type, flags) and 14..24 (ping counts, generation), the body's fixed part and the group
/// states; not the sequence number, send time, echoes or trailer. `None` (treated as a change)
/// when the message is too short for its counts or has more group states than are hashed.
#[inline(always)]
fn fingerprint(data: &[u8; RING_DATA_LEN], len: usize) -> Option<u64> {
    let body_end = wire::HEADER_LEN + BODY_FIXED_LEN;
    if len < body_end {
        return None;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    for i in wire::OFF_TYPE..wire::OFF_SENDER {
        mix(data[i]);
    }
    for i in wire::OFF_RESERVED..wire::OFF_SEQ {
        mix(data[i]);
    }
    for i in wire::HEADER_LEN..body_end {
        mix(data[i]);
    }
    let echoes = data[OFF_ECHO_COUNT] as usize;
    let groups = u16::from_be_bytes([data[OFF_GROUP_COUNT], data[OFF_GROUP_COUNT + 1]]) as usize;
    let start = body_end + echoes * ECHO_LEN;
    let glen = groups * GROUP_LEN;
    if glen > MAX_GROUP_BYTES || start + glen > len {
        return None;
    }
    for k in 0..MAX_GROUP_BYTES {
        if k >= glen {
            break;
        }
        mix(data[(start + k) & (RING_DATA_LEN - 1)]);
    }
    Some(h)
}

/// Stores `fp` as `key`'s latest fingerprint; returns whether it differs from the one before
/// (always `true` without a fingerprint or a `PEERS` entry).
#[inline(always)]
fn note_fingerprint(key: &PeerKey, fp: Option<u64>) -> bool {
    let Some(p) = PEERS.get_ptr_mut(key) else {
        return true;
    };
    // SAFETY: `p` points at the map's value for `key` (see count_peer).
    unsafe {
        let before = (*p).fingerprint;
        (*p).fingerprint = fp.unwrap_or(0);
        fp.is_none_or(|f| f != before)
    }
}

#[inline(always)]
fn try_hb_xdp(ctx: &XdpContext) -> Result<u32, ()> {
    let (port, consume, batch) = match CONFIG.get(0) {
        Some(cfg) if cfg.udp_port != 0 => (cfg.udp_port, cfg.consume != 0, cfg.batch != 0),
        _ => return Ok(xdp_action::XDP_PASS),
    };
    let Some(udp) = parse_l3(ctx)? else {
        bump(counter::NOT_HEARTBEAT);
        return Ok(xdp_action::XDP_PASS);
    };
    let sport = u16::from_be(read::<u16>(ctx, udp.offset)?);
    let dport = u16::from_be(read::<u16>(ctx, udp.offset + 2)?);
    if dport != port {
        bump(counter::NOT_HEARTBEAT);
        return Ok(xdp_action::XDP_PASS);
    }
    // SAFETY: ctx.ctx is the kernel's xdp_md for this invocation.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    // From here on every outcome counts globally and for the ingress interface.
    let slot = iface_slot(ifindex);
    let bump = |index: u32| count(slot, index);
    // A datagram to the heartbeat port that is no hb message: counted and dropped.
    let not_a_heartbeat = || {
        bump(counter::DROPPED);
        xdp_action::XDP_DROP
    };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() };
    // From here on the datagram is addressed to the heartbeat port (and is no IP fragment:
    // parse_l3 leaves those to the stack): anything that cannot be an hb message is dropped.
    let payload = udp.offset + UDP_HLEN;
    let Ok(udp_len) = read::<u16>(ctx, udp.offset + 4) else {
        return Ok(not_a_heartbeat());
    };
    let udp_len = u16::from_be(udp_len) as usize;
    let total = ctx.data_end() - ctx.data();
    if udp_len < UDP_HLEN + wire::HEADER_LEN
        || udp_len - UDP_HLEN > RING_DATA_LEN
        || udp.offset + udp_len > total
    {
        // Too short or too long for an hb message (RING_DATA_LEN is wire::MAX_MESSAGE_LEN), or
        // shorter than its UDP header says.
        return Ok(not_a_heartbeat());
    }
    let len = udp_len - UDP_HLEN;
    let Ok(header) = read::<[u8; wire::HEADER_LEN]>(ctx, payload) else {
        return Ok(not_a_heartbeat());
    };
    let be16 = |o: usize| u16::from_be_bytes([header[o], header[o + 1]]);
    let be32 =
        |o: usize| u32::from_be_bytes([header[o], header[o + 1], header[o + 2], header[o + 3]]);
    let be64 = |o: usize| ((be32(o) as u64) << 32) | be32(o + 4) as u64;
    if header[wire::OFF_MAGIC] != wire::MAGIC[0]
        || header[wire::OFF_MAGIC + 1] != wire::MAGIC[1]
        || header[wire::OFF_MAGIC + 2] != wire::MAGIC[2]
        || header[wire::OFF_MAGIC + 3] != wire::MAGIC[3]
        || header[wire::OFF_VERSION] != wire::VERSION
        || be16(wire::OFF_LENGTH) as usize != len
    {
        return Ok(not_a_heartbeat());
    }
    let sender = be32(wire::OFF_SENDER);
    let key = PeerKey { sender, ifindex };
    count_peer(
        &key,
        len as u64,
        now,
        be64(wire::OFF_GENERATION),
        be64(wire::OFF_SEQ),
    );

    let Some(mut entry) = EVENTS.reserve::<RingEvent>(0) else {
        bump(counter::RING_FULL);
        return Ok(xdp_action::XDP_PASS);
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved, exclusively owned RingEvent slot.
    unsafe {
        (*ev).kind = EVENT_PACKET;
        (*ev).ifindex = ifindex;
        (*ev).ktime_ns = now;
        (*ev).family = udp.family;
        (*ev).src_port = sport;
        (*ev).dst_port = dport;
        (*ev).src_addr = udp.src;
        (*ev).sender = sender;
        (*ev).len = len as u32;
        (*ev).flags = RING_WOKE;
        (*ev)._pad = 0;
    }
    // (len - 1) & mask + 1 == len for 1..=RING_DATA_LEN, and tells the verifier copy is in
    // 1..=RING_DATA_LEN (a power of two).
    let mask = RING_DATA_LEN - 1;
    let copy = ((len - 1) & mask) + 1;
    // SAFETY: copy is bounded by RING_DATA_LEN and, checked above, by the packet length.
    let ret = unsafe {
        aya_ebpf::helpers::bpf_xdp_load_bytes(
            ctx.ctx,
            payload as u32,
            (*ev).data.as_mut_ptr() as *mut _,
            copy as u32,
        )
    };
    if ret != 0 || copy != len {
        entry.discard(0);
        bump(counter::PARSE_FAIL);
        return Ok(xdp_action::XDP_PASS);
    }
    // SAFETY: `ev` is still the reserved slot; `data` holds the `len` bytes just copied.
    let changed = note_fingerprint(&key, fingerprint(unsafe { &(*ev).data }, len));
    // The wake-up (issue 20): as always (adaptive) unless the daemon's core is steady; then a
    // heartbeat that repeats its sender's state waits in the ring for the daemon's next
    // wake-up (its own deadline, a deadline record, a changed heartbeat, the ring an eighth
    // full), and the rest force one.
    let wake = if !batch {
        0
    } else if changed || EVENTS.query(BPF_RB_AVAIL_DATA as u64) > RING_WAKE_BYTES {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        // SAFETY: as above.
        unsafe { (*ev).flags = 0 };
        bump(counter::BATCHED);
        BPF_RB_NO_WAKEUP as u64
    };
    entry.submit(wake);
    bump(counter::DELIVERED);
    rearm_deadline(&key);
    if consume {
        bump(counter::CONSUMED);
        Ok(xdp_action::XDP_DROP)
    } else {
        Ok(xdp_action::XDP_PASS)
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// The ring buffer and bpf_timer helpers are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
