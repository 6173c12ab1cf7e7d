//! ICMP echo to ping nodes: one raw IPv4 ICMP socket (hbd has CAP_NET_RAW), non-blocking,
//! with `SO_TIMESTAMPNS` so a reply's arrival is the kernel's stamp (converted to
//! CLOCK_MONOTONIC as on the UDP path, see [`crate::net`]).
//!
//! [`Pinger::send`] writes an echo request (identifier: the low 16 bits of hbd's pid; sequence:
//! a counter) and remembers which ping-node address and send time the sequence number stands
//! for; [`Pinger::drain`] reads every queued datagram, keeps echo replies from the address that
//! was pinged with our identifier and a sequence number in flight, and returns them as
//! [`Reply`]s for [`hb_proto::node::Node::handle_ping_reply`]. Anything else the raw socket sees
//! (other ICMP traffic, replies to other processes) is dropped and counted by the caller.
//! Requests older than [`IN_FLIGHT_MAX_AGE`] are forgotten, so memory stays bounded.

use std::{
    collections::VecDeque,
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
    time::Duration,
};

use hb_proto::Timestamp;
use nix::sys::{
    socket::{
        AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, sendto, setsockopt,
        socket, sockopt,
    },
    time::TimeSpec,
};
use tokio::io::unix::AsyncFd;

use crate::net::{MAX_DATAGRAM, monotonic_now, read_one};

/// ICMP type of an echo request.
pub const ECHO_REQUEST: u8 = 8;
/// ICMP type of an echo reply.
pub const ECHO_REPLY: u8 = 0;
/// Bytes of payload after the 8-byte ICMP header ("hb ping\0").
pub const PAYLOAD: &[u8; 8] = b"hb ping\0";
/// A request not answered within this time is forgotten (a later reply is dropped).
pub const IN_FLIGHT_MAX_AGE: Duration = Duration::from_secs(60);
/// At most this many requests are remembered (oldest forgotten first).
pub const IN_FLIGHT_MAX: usize = 4096;

/// The internet checksum (RFC 1071) of `bytes`.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in bytes.chunks(2) {
        let word = match pair {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request with `id` and `seq`, checksummed.
pub fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + PAYLOAD.len());
    b.extend_from_slice(&[ECHO_REQUEST, 0, 0, 0]);
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(PAYLOAD);
    let c = checksum(&b);
    b[2..4].copy_from_slice(&c.to_be_bytes());
    b
}

/// The `(id, seq)` of an echo reply in `datagram` (an IPv4 packet as a raw socket reads it:
/// header, then ICMP), `None` for anything else (another ICMP type, a bad checksum, a short or
/// non-IPv4 packet).
pub fn parse_echo_reply(datagram: &[u8]) -> Option<(u16, u16)> {
    let first = *datagram.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    let icmp = datagram.get(ihl..)?;
    if icmp.len() < 8 || icmp[0] != ECHO_REPLY || icmp[1] != 0 || checksum(icmp) != 0 {
        return None;
    }
    Some((
        u16::from_be_bytes([icmp[4], icmp[5]]),
        u16::from_be_bytes([icmp[6], icmp[7]]),
    ))
}

/// One answered request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The ping-node address index (the core's `Output::Ping::link`).
    pub link: usize,
    /// When the request was sent (CLOCK_MONOTONIC, read just before `sendto`).
    pub sent: Timestamp,
    /// When the reply arrived (kernel stamp, or the read time when there was none).
    pub arrival: Timestamp,
    /// `true` when `arrival` is the kernel's stamp.
    pub kernel_stamp: bool,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    seq: u16,
    link: usize,
    addr: Ipv4Addr,
    sent: Timestamp,
}

/// What a drain saw besides replies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainCounts {
    /// ICMP datagrams that are not a reply to a request in flight (other traffic on the raw
    /// socket).
    pub ignored: u64,
}

/// The raw ICMP socket and the requests in flight.
#[derive(Debug)]
pub struct Pinger {
    fd: AsyncFd<OwnedFd>,
    id: u16,
    next_seq: u16,
    in_flight: VecDeque<InFlight>,
    buf: Vec<u8>,
    cmsg: Vec<u8>,
}

impl Pinger {
    /// Opens the raw socket (needs CAP_NET_RAW). Must be called inside a tokio runtime.
    pub fn open() -> io::Result<Self> {
        let fd = socket(
            AddressFamily::Inet,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::Icmp,
        )
        .map_err(io::Error::from)?;
        setsockopt(&fd, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)?;
        // SAFETY: the OwnedFd owns its descriptor until the AsyncFd (which takes it) drops.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)?;
        Ok(Self {
            fd,
            id: (std::process::id() & 0xffff) as u16,
            next_seq: 0,
            in_flight: VecDeque::new(),
            buf: vec![0; MAX_DATAGRAM],
            cmsg: nix::cmsg_space!(TimeSpec),
        })
    }

    /// Sends one echo request to `addr` for ping-node address `link`; returns the send time.
    /// IPv6 addresses are refused (the parser already refuses `ping6`).
    pub fn send(&mut self, link: usize, addr: IpAddr) -> io::Result<Timestamp> {
        let IpAddr::V4(v4) = addr else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "IPv6 ping nodes are not supported",
            ));
        };
        self.next_seq = self.next_seq.wrapping_add(1);
        let seq = self.next_seq;
        let packet = echo_request(self.id, seq);
        let dest = SockaddrIn::from(SocketAddrV4::new(v4, 0));
        let sent = monotonic_now();
        sendto(
            self.fd.get_ref().as_raw_fd(),
            &packet,
            &dest,
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        self.forget_old(sent);
        if self.in_flight.len() >= IN_FLIGHT_MAX {
            self.in_flight.pop_front();
        }
        self.in_flight.push_back(InFlight {
            seq,
            link,
            addr: v4,
            sent,
        });
        Ok(sent)
    }

    fn forget_old(&mut self, now: Timestamp) {
        while self
            .in_flight
            .front()
            .is_some_and(|f| now.saturating_since(f.sent) > IN_FLIGHT_MAX_AGE)
        {
            self.in_flight.pop_front();
        }
    }

    /// After a reload changed the ping nodes: `map[old]` is the new index of ping-node address
    /// `old` (`None`: removed), as [`hb_proto::node::Node::set_ping`] returns it. Requests in
    /// flight follow their address; those to a removed address are forgotten (a late reply is
    /// then dropped as ignored).
    pub fn remap(&mut self, map: &[Option<usize>]) {
        self.in_flight
            .retain_mut(|f| match map.get(f.link).copied().flatten() {
                Some(link) => {
                    f.link = link;
                    true
                }
                None => false,
            });
    }

    /// Requests in flight (bounded by [`IN_FLIGHT_MAX`]).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Waits until the socket may be readable.
    pub async fn readable(&self) -> io::Result<()> {
        let mut guard = self.fd.readable().await?;
        guard.clear_ready();
        Ok(())
    }

    /// Reads every queued datagram (at most `max`) without waiting; replies go to `out`.
    pub fn drain(&mut self, out: &mut Vec<Reply>, max: usize) -> io::Result<DrainCounts> {
        let mut counts = DrainCounts::default();
        for _ in 0..max {
            let d = match read_one(self.fd.get_ref().as_fd(), &mut self.buf, &mut self.cmsg) {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            };
            let SocketAddr::V4(src) = d.src else {
                counts.ignored += 1;
                continue;
            };
            let Some((id, seq)) = parse_echo_reply(&d.data) else {
                counts.ignored += 1;
                continue;
            };
            let pos = self
                .in_flight
                .iter()
                .position(|f| f.seq == seq && f.addr == *src.ip());
            match pos {
                Some(i) if id == self.id => {
                    if let Some(f) = self.in_flight.remove(i) {
                        out.push(Reply {
                            link: f.link,
                            sent: f.sent,
                            arrival: d.arrival,
                            kernel_stamp: d.kernel_stamp,
                        });
                    }
                }
                _ => counts.ignored += 1,
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_checksum_verifies() {
        let r = echo_request(0x1234, 7);
        assert_eq!(r.len(), 16);
        assert_eq!(r[0], ECHO_REQUEST);
        assert_eq!(checksum(&r), 0, "a checksummed packet sums to zero");
    }

    #[test]
    fn reply_is_parsed_after_the_ip_header() {
        let mut icmp = echo_request(0xbeef, 42);
        icmp[0] = ECHO_REPLY;
        icmp[2..4].copy_from_slice(&[0, 0]);
        let c = checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut ip = vec![
            0x45, 0, 0, 36, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 254, 10, 0, 0, 1,
        ];
        ip.extend_from_slice(&icmp);
        assert_eq!(parse_echo_reply(&ip), Some((0xbeef, 42)));
        // A request (our own, looped back) is not a reply.
        let mut req = ip[..20].to_vec();
        req.extend_from_slice(&echo_request(0xbeef, 42));
        assert_eq!(parse_echo_reply(&req), None);
        // Corrupted.
        let mut bad = ip.clone();
        bad[30] ^= 1;
        assert_eq!(parse_echo_reply(&bad), None);
        assert_eq!(parse_echo_reply(&ip[..24]), None);
        assert_eq!(parse_echo_reply(&[]), None);
    }
}
