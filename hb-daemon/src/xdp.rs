//! Loading hb's XDP program, reading its ring buffer and counters, and the `xdp auto|on|off`
//! policy.
//! Owns the loaded program, its maps and the ring reader; never decodes a message or judges
//! liveness (the core does both, on the bytes and arrival times handed through).
//!
//! The program (crate `hb-ebpf`) delivers every heartbeat it sees on an attached interface with
//! its kernel arrival time (`bpf_ktime_get_ns`, CLOCK_MONOTONIC) through the `EVENTS` ring
//! buffer. [`RingReader`] reads that ring buffer from tokio. Every [`XdpHandle`] loads its own
//! copy of the object and maps, so several daemons on one host (in different namespaces) never
//! share state. Programs are attached through bpf_links owned by the handle: they detach when
//! the handle drops and when the process dies, SIGKILL included.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd as _,
};

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{Xdp, XdpMode as AyaXdpMode, xdp::XdpLinkId},
};
use hb_common::{
    IFACES_MAP, IfaceCounters, PeerDeadline, PeerKey, PeerStats, RingEvent, XdpConfig, counter,
};
pub use hb_proto::config::model::XdpMode;
use hb_proto::{Timestamp, config::model::Media};
use thiserror::Error;
use tokio::io::{Interest, unix::AsyncFd};
use tracing::{info, warn};

/// The XDP object built by `build.rs` from `hb-ebpf`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hb"));

/// Errors loading or attaching the XDP program.
#[derive(Debug, Error)]
pub enum XdpError {
    /// The object failed to load (verifier, missing BTF, permissions).
    #[error("loading the XDP object: {0}")]
    Load(#[from] Box<aya::EbpfError>),
    /// A program operation failed.
    #[error("XDP program: {0}")]
    Program(#[from] aya::programs::ProgramError),
    /// A map operation failed.
    #[error("XDP map: {0}")]
    Map(#[from] aya::maps::MapError),
    /// A map or program the object must contain is missing.
    #[error("the XDP object has no {0}")]
    Missing(&'static str),
    /// Attaching in both native and generic mode failed.
    #[error("attaching XDP to {iface}: native mode: {native}; generic mode: {generic}")]
    Attach {
        /// Interface name.
        iface: String,
        /// Error in native (driver) mode.
        native: String,
        /// Error in generic (SKB) mode.
        generic: String,
    },
    /// Registering or polling the ring buffer's file descriptor failed.
    #[error("ring buffer fd: {0}")]
    Io(#[from] std::io::Error),
    /// `xdp on` was configured but no interface to attach to was given.
    #[error("xdp on: no heartbeat interface (bcast/ucast/mcast) to attach to")]
    NoInterface,
}

/// How a program ended up attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// Driver (native) mode.
    Native,
    /// Generic (SKB) mode.
    Generic,
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Native => "native",
            Self::Generic => "generic",
        })
    }
}

/// Counters the XDP program keeps for one (sender, interface): the `PEERS` map's key and
/// value as the program wrote them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCounters {
    /// Sender node id and interface.
    pub key: PeerKey,
    /// The counters ([`PeerStats`]).
    pub stats: PeerStats,
}

/// The loaded XDP program with its maps. Dropping it detaches every link.
#[derive(Debug)]
pub struct XdpHandle {
    ebpf: Ebpf,
    links: Vec<(String, XdpLinkId, AttachMode)>,
    /// What `CONFIG` holds.
    config: XdpConfig,
}

impl XdpHandle {
    /// Loads the object and writes its configuration: the heartbeat UDP port, and whether
    /// heartbeats delivered through the ring buffer are consumed (`XDP_DROP`) rather than also
    /// passed to the socket.
    pub fn load(udp_port: u16, consume: bool) -> Result<Self, XdpError> {
        let mut ebpf = Ebpf::load(EBPF_OBJECT).map_err(Box::new)?;
        let config = XdpConfig {
            udp_port,
            _pad: 0,
            consume: u32::from(consume),
            batch: 0,
            _pad1: 0,
        };
        write_config(&mut ebpf, config)?;
        let prog: &mut Xdp = ebpf
            .program_mut("hb_xdp")
            .ok_or(XdpError::Missing("hb_xdp program"))?
            .try_into()?;
        prog.load()?;
        Ok(Self {
            ebpf,
            links: Vec::new(),
            config,
        })
    }

    /// [`XdpConfig::batch`] as written: `true` while the core is steady (heartbeats that repeat their
    /// sender's state are queued without waking the daemon), `false` for a wake-up per record.
    /// Takes effect for the next heartbeat; records queued before stay queued until the next
    /// drain, so a caller turning it off drains the ring right after.
    pub fn batching(&self) -> bool {
        self.config.batch != 0
    }

    /// Sets [`XdpConfig::batch`] (see [`XdpHandle::batching`]).
    pub fn set_batch(&mut self, on: bool) -> Result<(), XdpError> {
        let config = XdpConfig {
            batch: u32::from(on),
            ..self.config
        };
        write_config(&mut self.ebpf, config)?;
        self.config = config;
        Ok(())
    }

    /// Attaches to `iface`, native mode first, generic (SKB) mode as the fallback.
    pub fn attach(&mut self, iface: &str) -> Result<AttachMode, XdpError> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut("hb_xdp")
            .ok_or(XdpError::Missing("hb_xdp program"))?
            .try_into()?;
        let (id, mode) = match prog.attach(iface, AyaXdpMode::Driver) {
            Ok(id) => (id, AttachMode::Native),
            Err(native) => match prog.attach(iface, AyaXdpMode::Skb) {
                Ok(id) => (id, AttachMode::Generic),
                Err(generic) => {
                    return Err(XdpError::Attach {
                        iface: iface.to_owned(),
                        native: native.to_string(),
                        generic: generic.to_string(),
                    });
                }
            },
        };
        self.links.push((iface.to_owned(), id, mode));
        Ok(mode)
    }

    /// Interfaces attached so far, with their mode.
    pub fn attached(&self) -> Vec<(String, AttachMode)> {
        self.links
            .iter()
            .map(|(iface, _, mode)| (iface.clone(), *mode))
            .collect()
    }

    /// Takes the ring buffer out of the object (once).
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>, XdpError> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .ok_or(XdpError::Missing("EVENTS map"))?;
        Ok(RingBuf::try_from(map)?)
    }

    /// Takes the ring buffer out of the object (once) and registers it with tokio. Must be
    /// called inside a tokio runtime.
    pub fn ring_reader(&mut self) -> Result<RingReader, XdpError> {
        RingReader::new(self.take_ring()?)
    }

    /// Sum over CPUs of one global counter (see `hb_common::counter`).
    pub fn counter(&self, index: u32) -> Result<u64, XdpError> {
        let map = self
            .ebpf
            .map("COUNTERS")
            .ok_or(XdpError::Missing("COUNTERS map"))?;
        let counters: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        Ok(counters.get(&index, 0)?.iter().sum())
    }

    /// Every global counter, by name.
    pub fn counters(&self) -> Result<Vec<(&'static str, u64)>, XdpError> {
        let names = [
            ("seen", counter::SEEN),
            ("delivered", counter::DELIVERED),
            ("ring_full", counter::RING_FULL),
            ("parse_fail", counter::PARSE_FAIL),
            ("not_heartbeat", counter::NOT_HEARTBEAT),
            ("consumed", counter::CONSUMED),
            ("peers_full", counter::PEERS_FULL),
            ("deadlines", counter::DEADLINES),
            ("dropped", counter::DROPPED),
            ("batched", counter::BATCHED),
            ("ifaces_full", counter::IFACES_FULL),
        ];
        names
            .into_iter()
            .map(|(name, i)| Ok((name, self.counter(i)?)))
            .collect()
    }

    /// The counters of the packets that arrived on interface `ifindex`, summed over CPUs (all
    /// zero before the first packet there).
    pub fn iface_counters(&self, ifindex: u32) -> Result<IfaceCounters, XdpError> {
        let map = self
            .ebpf
            .map(IFACES_MAP)
            .ok_or(XdpError::Missing("IFACES map"))?;
        let ifaces: PerCpuHashMap<_, u32, IfaceCounters> = PerCpuHashMap::try_from(map)?;
        let per_cpu = match ifaces.get(&ifindex, 0) {
            Ok(v) => v,
            Err(aya::maps::MapError::KeyNotFound) => return Ok(IfaceCounters::default()),
            Err(e) => return Err(e.into()),
        };
        let mut sum = IfaceCounters::default();
        for cpu in per_cpu.iter() {
            for (s, c) in sum.counts.iter_mut().zip(cpu.counts) {
                *s = s.saturating_add(c);
            }
        }
        Ok(sum)
    }

    /// Sets the kernel deadline for heartbeats of `sender` on interface `ifindex` (issue 10):
    /// from the next heartbeat the program delivers for that pair, it posts an
    /// [`hb_common::EVENT_DEADLINE`] record whenever `deadline` passes without another one.
    /// Setting it again cancels the running timer until the next heartbeat.
    pub fn set_deadline(
        &mut self,
        sender: u32,
        ifindex: u32,
        deadline: std::time::Duration,
    ) -> Result<(), XdpError> {
        let map = self
            .ebpf
            .map_mut("DEADLINES")
            .ok_or(XdpError::Missing("DEADLINES map"))?;
        let mut deadlines: HashMap<_, PeerKey, PeerDeadline> = HashMap::try_from(map)?;
        let deadline_ns = u64::try_from(deadline.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        deadlines.insert(
            PeerKey { sender, ifindex },
            PeerDeadline {
                deadline_ns,
                ..PeerDeadline::default()
            },
            0,
        )?;
        Ok(())
    }

    /// Stops watching `sender` on `ifindex` (cancels its timer).
    pub fn clear_deadline(&mut self, sender: u32, ifindex: u32) -> Result<(), XdpError> {
        let map = self
            .ebpf
            .map_mut("DEADLINES")
            .ok_or(XdpError::Missing("DEADLINES map"))?;
        let mut deadlines: HashMap<_, PeerKey, PeerDeadline> = HashMap::try_from(map)?;
        match deadlines.remove(&PeerKey { sender, ifindex }) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The per-(sender, interface) counters, ordered by sender then interface.
    pub fn peer_counters(&self) -> Result<Vec<PeerCounters>, XdpError> {
        let map = self
            .ebpf
            .map("PEERS")
            .ok_or(XdpError::Missing("PEERS map"))?;
        let peers: HashMap<_, PeerKey, PeerStats> = HashMap::try_from(map)?;
        let mut out = Vec::new();
        for entry in peers.iter() {
            let (key, stats) = entry?;
            out.push(PeerCounters { key, stats });
        }
        out.sort_by_key(|p| (p.key.sender, p.key.ifindex));
        Ok(out)
    }
}

fn write_config(ebpf: &mut Ebpf, config: XdpConfig) -> Result<(), XdpError> {
    let map = ebpf
        .map_mut("CONFIG")
        .ok_or(XdpError::Missing("CONFIG map"))?;
    let mut array: Array<_, XdpConfig> = Array::try_from(map)?;
    array.set(0, config, 0)?;
    Ok(())
}

/// The XDP ring buffer registered with tokio.
///
/// Use: `reader.readable().await?` then `reader.drain(&mut events)`. `drain` never blocks, so
/// the daemon can also drain right before it judges liveness.
pub struct RingReader {
    fd: AsyncFd<RingBuf<MapData>>,
}

impl std::fmt::Debug for RingReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingReader")
            .field("fd", &self.fd.get_ref().as_raw_fd())
            .finish()
    }
}

impl RingReader {
    /// Registers `ring` with the current tokio runtime.
    pub fn new(ring: RingBuf<MapData>) -> Result<Self, XdpError> {
        // SAFETY: the fd belongs to `ring` (an OwnedFd inside its MapData), which the AsyncFd
        // owns: it stays open and the same for the AsyncFd's whole life, and `drain` never
        // replaces the ring buffer.
        let fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Self { fd })
    }

    /// Waits until the kernel signals new records. Records may also be present without a
    /// signal (call [`RingReader::drain`] first at start-up).
    pub async fn readable(&mut self) -> Result<(), XdpError> {
        let mut guard = self.fd.readable_mut().await?;
        // Cleared before draining: a record submitted after this point signals again.
        guard.clear_ready();
        Ok(())
    }

    /// Appends every record in the ring buffer to `out`, without blocking. Returns how many it
    /// took. (The daemon uses [`RingReader::drain_max`]: a producer as fast as this reader keeps
    /// `drain` going.)
    pub fn drain(&mut self, out: &mut Vec<RingEvent>) -> usize {
        self.drain_max(out, usize::MAX)
    }

    /// Appends up to `max` records of the ring buffer to `out`, without blocking (a producer
    /// as fast as the reader cannot keep it here). Returns how many records it took (records
    /// of the wrong size are taken and skipped); fewer than `max` means the ring was empty.
    pub fn drain_max(&mut self, out: &mut Vec<RingEvent>, max: usize) -> usize {
        let ring = self.fd.get_mut();
        let mut n = 0;
        while n < max {
            let Some(item) = ring.next() else { break };
            n += 1;
            if let Some(ev) = parse_ring_record(&item) {
                out.push(ev);
            }
        }
        n
    }
}

/// Applies the `xdp` directive: loads the program and attaches it on each interface in
/// `ifaces` (duplicates ignored), logging which path heartbeats take and why.
///
/// - [`XdpMode::Off`]: socket path only, returns `Ok(None)`.
/// - [`XdpMode::Auto`]: XDP where it attaches, else the socket path; never an error. Returns
///   `Ok(None)` when the program loads nowhere.
/// - [`XdpMode::On`]: any failure to load or attach on any interface is an error (the daemon
///   refuses to start).
///
/// `consume` is passed to [`XdpHandle::load`].
pub fn start_xdp(
    mode: XdpMode,
    ifaces: &[String],
    port: u16,
    consume: bool,
) -> Result<Option<XdpHandle>, XdpError> {
    start_xdp_explained(mode, ifaces, port, consume).map(|(h, _)| h)
}

/// Interfaces left on the socket path, each with why (`xdp off in ha.cf`, the attach error).
pub type SocketReasons = Vec<(String, String)>;

/// [`start_xdp`], also saying for each interface left on the socket path why (`hbctl status`
/// and `hbstat` show it).
pub fn start_xdp_explained(
    mode: XdpMode,
    ifaces: &[String],
    port: u16,
    consume: bool,
) -> Result<(Option<XdpHandle>, SocketReasons), XdpError> {
    let mut why = Vec::new();
    let mut unique: Vec<&str> = Vec::new();
    for iface in ifaces {
        if !unique.contains(&iface.as_str()) {
            unique.push(iface);
        }
    }
    match mode {
        XdpMode::Off => {
            info!("xdp off: heartbeats take the socket path");
            for iface in unique {
                why.push((iface.to_owned(), "xdp off in ha.cf".to_owned()));
            }
            Ok((None, why))
        }
        XdpMode::On => {
            if unique.is_empty() {
                return Err(XdpError::NoInterface);
            }
            let mut handle = XdpHandle::load(port, consume)?;
            for iface in unique {
                let mode = handle.attach(iface)?;
                info!("xdp on: attached to {iface} in {mode} mode");
            }
            Ok((Some(handle), why))
        }
        XdpMode::Auto => {
            if unique.is_empty() {
                info!("xdp auto: no heartbeat interface; heartbeats take the socket path");
                return Ok((None, why));
            }
            let mut handle = match XdpHandle::load(port, consume) {
                Ok(handle) => handle,
                Err(e) => {
                    warn!(
                        "xdp auto: cannot load the XDP program ({e}); heartbeats take the socket path"
                    );
                    for iface in unique {
                        why.push((iface.to_owned(), format!("XDP program not loaded: {e}")));
                    }
                    return Ok((None, why));
                }
            };
            for iface in unique {
                match handle.attach(iface) {
                    Ok(mode) => info!("xdp auto: attached to {iface} in {mode} mode"),
                    Err(e) => {
                        warn!("xdp auto: {e}; heartbeats on {iface} take the socket path");
                        why.push((iface.to_owned(), format!("attach failed: {e}")));
                    }
                }
            }
            if handle.links.is_empty() {
                warn!("xdp auto: attached nowhere; heartbeats take the socket path");
                return Ok((None, why));
            }
            Ok((Some(handle), why))
        }
    }
}

/// The interfaces named by the heartbeat media (`bcast`/`ucast`/`mcast` lines), each once, in
/// configuration order: what [`start_xdp`] attaches to.
pub fn media_ifaces(media: &[Media]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in media {
        if !out.iter().any(|i| i == m.iface()) {
            out.push(m.iface().to_owned());
        }
    }
    out
}

/// The kernel arrival time of a record (`bpf_ktime_get_ns`, CLOCK_MONOTONIC), as the core's
/// [`Timestamp`].
pub fn arrival(ev: &RingEvent) -> Timestamp {
    Timestamp::from_nanos(ev.ktime_ns)
}

/// Whether the record woke the reader ([`hb_common::RING_WOKE`]): only then does its read time
/// measure delivery.
pub fn woke(ev: &RingEvent) -> bool {
    ev.flags & hb_common::RING_WOKE != 0
}

/// The hb message carried by an [`hb_common::EVENT_PACKET`] record (empty for other kinds).
pub fn payload(ev: &RingEvent) -> &[u8] {
    if ev.kind != hb_common::EVENT_PACKET {
        return &[];
    }
    let len = (ev.len as usize).min(hb_common::RING_DATA_LEN);
    &ev.data[..len]
}

/// The UDP source address and port of an [`hb_common::EVENT_PACKET`] record.
pub fn source(ev: &RingEvent) -> Option<SocketAddr> {
    if ev.kind != hb_common::EVENT_PACKET {
        return None;
    }
    let ip = match ev.family {
        hb_common::FAMILY_V4 => IpAddr::V4(Ipv4Addr::new(
            ev.src_addr[0],
            ev.src_addr[1],
            ev.src_addr[2],
            ev.src_addr[3],
        )),
        hb_common::FAMILY_V6 => IpAddr::V6(Ipv6Addr::from(ev.src_addr)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, ev.src_port))
}

/// Copies one ring-buffer record into a [`RingEvent`]; `None` if the record is too short.
pub fn parse_ring_record(bytes: &[u8]) -> Option<RingEvent> {
    if bytes.len() < core::mem::size_of::<RingEvent>() {
        return None;
    }
    // SAFETY: RingEvent is Pod (every bit pattern valid) and the length was checked;
    // read_unaligned copes with the ring buffer's 8-byte alignment.
    Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<RingEvent>()) })
}

/// Raw fd of a ring buffer, for `AsyncFd` registration.
pub fn ring_fd(ring: &RingBuf<MapData>) -> i32 {
    ring.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u32, family: u32) -> RingEvent {
        let mut ev = RingEvent {
            kind,
            ifindex: 3,
            ktime_ns: 1_234_567,
            family,
            src_port: 40001,
            dst_port: 694,
            src_addr: [0; 16],
            sender: 9,
            len: 5,
            flags: hb_common::RING_WOKE,
            _pad: 0,
            data: [0; hb_common::RING_DATA_LEN],
        };
        ev.data[..5].copy_from_slice(b"hello");
        ev
    }

    #[test]
    fn record_accessors() {
        let mut v4 = record(hb_common::EVENT_PACKET, hb_common::FAMILY_V4);
        v4.src_addr[..4].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(source(&v4), Some("10.0.0.1:40001".parse().unwrap()));
        assert_eq!(payload(&v4), b"hello");
        assert_eq!(arrival(&v4), Timestamp::from_nanos(1_234_567));
        let mut v6 = record(hb_common::EVENT_PACKET, hb_common::FAMILY_V6);
        v6.src_addr = "fd00::7".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(source(&v6), Some("[fd00::7]:40001".parse().unwrap()));
        let deadline = record(hb_common::EVENT_DEADLINE, 0);
        assert_eq!(source(&deadline), None);
        assert!(payload(&deadline).is_empty());
        let mut bytes = vec![0u8; core::mem::size_of::<RingEvent>()];
        // SAFETY: RingEvent is plain data of exactly this size.
        unsafe { core::ptr::write_unaligned(bytes.as_mut_ptr().cast::<RingEvent>(), v4) };
        assert_eq!(parse_ring_record(&bytes).map(|e| e.sender), Some(9));
        assert!(parse_ring_record(&bytes[1..]).is_none());
    }

    #[test]
    fn media_interfaces_once_in_order() {
        let media = vec![
            Media::Bcast {
                iface: "eth1".into(),
            },
            Media::Ucast {
                iface: "eth2".into(),
                addr: "10.0.0.2".parse().unwrap(),
            },
            Media::Bcast {
                iface: "eth1".into(),
            },
        ];
        assert_eq!(media_ifaces(&media), vec!["eth1", "eth2"]);
    }
}
