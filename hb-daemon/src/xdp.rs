//! Loading hb's XDP program and reading its ring buffer.

use std::os::fd::AsRawFd as _;

use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use hb_common::{RingEvent, XdpConfig, counter};
use thiserror::Error;

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
}

/// How a program ended up attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// Driver (native) mode.
    Native,
    /// Generic (SKB) mode.
    Generic,
}

/// The loaded XDP program with its maps. Dropping it detaches every link.
#[derive(Debug)]
pub struct XdpHandle {
    ebpf: Ebpf,
    links: Vec<(String, XdpLinkId, AttachMode)>,
}

impl XdpHandle {
    /// Loads the object and writes its configuration (heartbeat UDP port; whether delivered
    /// heartbeats are consumed).
    pub fn load(udp_port: u16, consume: bool) -> Result<Self, XdpError> {
        let mut ebpf = Ebpf::load(EBPF_OBJECT).map_err(Box::new)?;
        {
            let map = ebpf
                .map_mut("CONFIG")
                .ok_or(XdpError::Missing("CONFIG map"))?;
            let mut config: Array<_, XdpConfig> = Array::try_from(map)?;
            config.set(
                0,
                XdpConfig {
                    udp_port,
                    _pad: 0,
                    consume: u32::from(consume),
                },
                0,
            )?;
        }
        let prog: &mut Xdp = ebpf
            .program_mut("hb_xdp")
            .ok_or(XdpError::Missing("hb_xdp program"))?
            .try_into()?;
        prog.load()?;
        Ok(Self {
            ebpf,
            links: Vec::new(),
        })
    }

    /// Attaches to `iface`, native mode first, generic mode as the fallback.
    pub fn attach(&mut self, iface: &str) -> Result<AttachMode, XdpError> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut("hb_xdp")
            .ok_or(XdpError::Missing("hb_xdp program"))?
            .try_into()?;
        let (id, mode) = match prog.attach(iface, XdpMode::Driver) {
            Ok(id) => (id, AttachMode::Native),
            Err(native) => match prog.attach(iface, XdpMode::Skb) {
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

    /// Takes the ring buffer out of the object (once).
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>, XdpError> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .ok_or(XdpError::Missing("EVENTS map"))?;
        Ok(RingBuf::try_from(map)?)
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
        ];
        names
            .into_iter()
            .map(|(name, i)| Ok((name, self.counter(i)?)))
            .collect()
    }
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
