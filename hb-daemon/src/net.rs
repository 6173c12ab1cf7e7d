//! The socket path: UDP heartbeats without XDP.
//! Owns the heartbeat UDP sockets and the clock reads (the daemon's one CLOCK_MONOTONIC read is
//! [`monotonic_now`]); never decodes a message or judges a peer.
//!
//! Sending: one [`MediumSender`] per ha.cf medium (`bcast` to the interface's configured
//! broadcast address, else 255.255.255.255; `ucast`; `mcast`), an unconnected
//! non-blocking UDP socket bound to its interface with `SO_BINDTODEVICE` (a connected socket
//! would get `ECONNREFUSED` after an ICMP port-unreachable). A send error (`EPERM` from a local
//! iptables `DROP`, `ENOBUFS`, `EAGAIN` when the socket buffer is full) is counted and
//! returned, never fatal: the caller counts it in its metrics and goes on.
//!
//! Receiving: one [`Receiver`] per (interface, port), bound to `0.0.0.0:port` with
//! `SO_BINDTODEVICE`, `SO_REUSEADDR` and `SO_REUSEPORT` (so the link a datagram came on is
//! known), joined to the interface's multicast groups, with `SO_TIMESTAMPNS` on. Datagrams are
//! read with `recvmsg` through a tokio [`AsyncFd`]; [`Receiver::drain`] reads everything
//! queued without waiting.
//!
//! # Arrival stamps
//!
//! The kernel stamps a datagram with CLOCK_REALTIME when it arrives; hb's time is
//! CLOCK_MONOTONIC. Each read measures `offset = REALTIME - MONOTONIC` by reading MONOTONIC,
//! REALTIME, MONOTONIC back to back and taking the middle of the two MONOTONIC reads, then
//! `arrival = kernel_stamp - offset` (the narrowest of three readings is kept). The error of
//! that conversion is bounded by
//! - half the bracketing window (the two MONOTONIC reads; returned by [`realtime_offset`]:
//!   with the narrowest of three, at most 0.11 us over 1000 calls on a loaded 2-core machine,
//!   debug build; a single reading reached 11 us when the thread was preempted), plus
//! - any change of REALTIME relative to MONOTONIC between the arrival and the read: NTP slewing
//!   (at most 500 ppm of the time the datagram sat in the queue: 0.5 us per ms queued) or a
//!   clock step. A backward step, or a forward step of more than [`MAX_QUEUE_AGE`], is visible
//!   as an arrival after the read or too long before it; such stamps are replaced by the read
//!   time and [`Datagram::kernel_stamp`] is `false`. A smaller forward step between arrival and
//!   read is not detected: that one datagram looks older by the step.
//!
//! IPv4 only, like Heartbeat's media.

use std::{
    io::{self, IoSliceMut},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd},
    time::Duration,
};

use hb_proto::{Timestamp, config::Media};
use nix::{
    errno::Errno,
    sys::{
        socket::{
            AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, SockaddrIn, bind,
            recvmsg, setsockopt, socket, sockopt,
        },
        time::TimeSpec,
    },
    time::{ClockId, clock_gettime},
};
use thiserror::Error;
use tokio::io::unix::AsyncFd;

/// Largest datagram read; longer ones are truncated (and rejected by the codec).
pub const MAX_DATAGRAM: usize = 65_535;
/// A kernel stamp older than this at read time is taken for a REALTIME step and replaced by
/// the read time.
pub const MAX_QUEUE_AGE: Duration = Duration::from_secs(10);

/// Errors opening a socket.
#[derive(Debug, Error)]
pub enum NetError {
    /// A socket call failed.
    #[error("{what} on {iface}: {source}")]
    Socket {
        /// Which call.
        what: &'static str,
        /// Interface of the socket.
        iface: String,
        /// The error.
        source: Errno,
    },
    /// The medium names an IPv6 address; hb's media are IPv4 like Heartbeat's.
    #[error("{iface}: IPv6 address {addr} in a heartbeat medium is not supported")]
    Ipv6 {
        /// Interface.
        iface: String,
        /// The address.
        addr: std::net::IpAddr,
    },
    /// Registering the socket with tokio failed (no runtime, or epoll failed).
    #[error("registering the socket on {iface} with tokio: {source}")]
    Register {
        /// Interface.
        iface: String,
        /// The error.
        source: io::Error,
    },
}

fn timespec_ns(ts: TimeSpec) -> u64 {
    let secs = u64::try_from(ts.tv_sec()).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec()).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

fn clock_ns(clock: ClockId) -> u64 {
    clock_gettime(clock).map(timespec_ns).unwrap_or(0)
}

/// Now on CLOCK_MONOTONIC (the clock `bpf_ktime_get_ns` reads).
pub fn monotonic_now() -> Timestamp {
    Timestamp(clock_ns(ClockId::CLOCK_MONOTONIC))
}

/// `REALTIME - MONOTONIC` in ns, and the half-width of the window it was measured in: the
/// narrowest of three MONOTONIC/REALTIME/MONOTONIC readings, so one preemption in the middle
/// of a reading does not widen the bound.
pub fn realtime_offset() -> (i128, u64) {
    let mut best = (0i128, u64::MAX);
    for _ in 0..3 {
        let m1 = clock_ns(ClockId::CLOCK_MONOTONIC);
        let real = clock_ns(ClockId::CLOCK_REALTIME);
        let m2 = clock_ns(ClockId::CLOCK_MONOTONIC);
        let half = m2.saturating_sub(m1).div_ceil(2);
        if half < best.1 {
            let mid = i128::from(m1) + i128::from(m2.saturating_sub(m1) / 2);
            best = (i128::from(real) - mid, half);
        }
    }
    best
}

/// Converts a kernel CLOCK_REALTIME stamp (ns) to CLOCK_MONOTONIC with `offset` from
/// [`realtime_offset`]; `None` when the result is after `read_at` or more than
/// [`MAX_QUEUE_AGE`] before it (a REALTIME step between arrival and read).
pub fn realtime_to_monotonic(
    realtime_ns: u64,
    offset: i128,
    read_at: Timestamp,
) -> Option<Timestamp> {
    let mono = i128::from(realtime_ns) - offset;
    let mono = u64::try_from(mono).ok()?;
    // Within the measurement error a stamp may land a little after the read: allow 1 us.
    if mono > read_at.as_nanos().saturating_add(1_000) {
        return None;
    }
    let mono = mono.min(read_at.as_nanos());
    if read_at.as_nanos() - mono > hb_proto::time::duration_nanos(MAX_QUEUE_AGE) {
        return None;
    }
    Some(Timestamp(mono))
}

fn sock_err(what: &'static str, iface: &str) -> impl FnOnce(Errno) -> NetError + use<> {
    let iface = iface.to_owned();
    move |source| NetError::Socket {
        what,
        iface,
        source,
    }
}

fn udp_socket(iface: &str) -> Result<OwnedFd, NetError> {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(sock_err("socket", iface))?;
    setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(iface))
        .map_err(sock_err("SO_BINDTODEVICE", iface))?;
    Ok(fd)
}

/// Sets an `ip_mreqn` option (`IP_ADD_MEMBERSHIP`, `IP_MULTICAST_IF`) with an interface index,
/// which nix only offers with an interface address.
fn set_mreqn(
    fd: BorrowedFd<'_>,
    option: libc::c_int,
    group: Ipv4Addr,
    ifindex: u32,
) -> Result<(), Errno> {
    let mreq = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr {
            s_addr: u32::from(group).to_be(),
        },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: libc::c_int::try_from(ifindex).map_err(|_| Errno::EINVAL)?,
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::ip_mreqn>())
        .map_err(|_| Errno::EINVAL)?;
    // SAFETY: `fd` is an open socket for the duration of the call; the pointer and length
    // describe `mreq`, a live, initialised ip_mreqn that the kernel only reads.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            option,
            (&raw const mreq).cast(),
            len,
        )
    };
    Errno::result(rc).map(drop)
}

fn ifindex(iface: &str) -> Result<u32, NetError> {
    nix::net::if_::if_nametoindex(iface).map_err(sock_err("if_nametoindex", iface))
}

/// The IPv4 broadcast address configured on `iface` (`ip addr add ... brd ...`), when it has
/// one. An address added without `brd` has none: getifaddrs then reports the address itself
/// (or 0.0.0.0), which is not taken for a broadcast address.
pub fn iface_broadcast(iface: &str) -> Option<Ipv4Addr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|a| {
        if a.interface_name != iface {
            return None;
        }
        let local = a.address?.as_sockaddr_in()?.ip();
        let brd = a.broadcast?.as_sockaddr_in()?.ip();
        (brd != local && !brd.is_unspecified()).then_some(brd)
    })
}

/// This machine's addresses, every interface, IPv4 and IPv6 (for
/// [`hb_proto::config::LoadOptions::local_addrs`]: a `ucast` to one of them is not a link). Empty
/// when they cannot be read, and then every `ucast` line stays a medium, as before.
pub fn local_addresses() -> Vec<std::net::IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for a in addrs {
        let Some(sa) = a.address else { continue };
        let ip = if let Some(v4) = sa.as_sockaddr_in() {
            std::net::IpAddr::V4(v4.ip())
        } else if let Some(v6) = sa.as_sockaddr_in6() {
            std::net::IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if !v.contains(&ip) {
            v.push(ip);
        }
    }
    v
}

/// A failed send: what happened, and a fixed label for metrics.
#[derive(Debug, Error)]
#[error("sending on {iface} to {dest}: {source}")]
pub struct SendError {
    /// Interface.
    pub iface: String,
    /// Destination.
    pub dest: SocketAddr,
    /// Label for [`crate::metrics::Metrics::record_socket_error`].
    pub label: &'static str,
    /// The error.
    pub source: io::Error,
}

/// A fixed label for a send error, for metrics (`send_eperm`, `send_enobufs`, ...).
pub fn send_error_label(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) => "send_eperm",
        Some(libc::ENOBUFS) => "send_enobufs",
        Some(libc::EAGAIN) => "send_eagain",
        Some(libc::ECONNREFUSED) => "send_econnrefused",
        Some(libc::ENETUNREACH) => "send_enetunreach",
        Some(libc::EHOSTUNREACH) => "send_ehostunreach",
        Some(libc::ENETDOWN) => "send_enetdown",
        Some(libc::ENODEV) | Some(libc::ENXIO) => "send_enodev",
        Some(libc::EMSGSIZE) => "send_emsgsize",
        _ => "send_other",
    }
}

/// A socket sending heartbeats over one medium.
#[derive(Debug)]
pub struct MediumSender {
    iface: String,
    socket: UdpSocket,
    dest: SocketAddr,
}

impl MediumSender {
    /// Opens the socket for `medium`; `udpport` is ha.cf's (bcast and ucast; mcast carries its
    /// own port).
    pub fn open(medium: &Media, udpport: u16) -> Result<Self, NetError> {
        let iface = medium.iface();
        let fd = udp_socket(iface)?;
        let dest = match medium {
            Media::Bcast { .. } => {
                setsockopt(&fd, sockopt::Broadcast, &true)
                    .map_err(sock_err("SO_BROADCAST", iface))?;
                let addr = iface_broadcast(iface).unwrap_or(Ipv4Addr::BROADCAST);
                SocketAddrV4::new(addr, udpport)
            }
            Media::Ucast { addr, .. } => match addr {
                std::net::IpAddr::V4(a) => SocketAddrV4::new(*a, udpport),
                std::net::IpAddr::V6(_) => {
                    return Err(NetError::Ipv6 {
                        iface: iface.to_owned(),
                        addr: *addr,
                    });
                }
            },
            Media::Mcast {
                group,
                port,
                ttl,
                loopback,
                ..
            } => {
                let std::net::IpAddr::V4(g) = group else {
                    return Err(NetError::Ipv6 {
                        iface: iface.to_owned(),
                        addr: *group,
                    });
                };
                setsockopt(&fd, sockopt::IpMulticastTtl, ttl)
                    .map_err(sock_err("IP_MULTICAST_TTL", iface))?;
                setsockopt(&fd, sockopt::IpMulticastLoop, loopback)
                    .map_err(sock_err("IP_MULTICAST_LOOP", iface))?;
                set_mreqn(fd.as_fd(), libc::IP_MULTICAST_IF, *g, ifindex(iface)?)
                    .map_err(sock_err("IP_MULTICAST_IF", iface))?;
                SocketAddrV4::new(*g, *port)
            }
        };
        Ok(Self {
            iface: iface.to_owned(),
            socket: UdpSocket::from(fd),
            dest: SocketAddr::V4(dest),
        })
    }

    /// Sends one datagram without waiting. An error is returned with its fixed label (the
    /// daemon counts it under that label in the metrics); it is never a reason to stop.
    pub fn send(&mut self, datagram: &[u8]) -> Result<(), SendError> {
        match self.socket.send_to(datagram, self.dest) {
            Ok(_) => Ok(()),
            Err(source) => Err(SendError {
                iface: self.iface.clone(),
                dest: self.dest,
                label: send_error_label(&source),
                source,
            }),
        }
    }

    /// Interface.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Where datagrams go.
    pub fn destination(&self) -> SocketAddr {
        self.dest
    }
}

/// What one [`Receiver`] listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverSpec {
    /// Interface.
    pub iface: String,
    /// UDP port.
    pub port: u16,
    /// Multicast groups to join on the interface.
    pub groups: Vec<Ipv4Addr>,
}

/// The receivers the media need: one per distinct (interface, port), with the multicast
/// groups of that interface and port. IPv6 groups are skipped ([`MediumSender::open`]
/// refuses them).
pub fn receiver_specs(media: &[Media], udpport: u16) -> Vec<ReceiverSpec> {
    let mut specs: Vec<ReceiverSpec> = Vec::new();
    for m in media {
        let (port, group) = match m {
            Media::Bcast { .. } | Media::Ucast { .. } => (udpport, None),
            Media::Mcast { group, port, .. } => (
                *port,
                match group {
                    std::net::IpAddr::V4(g) => Some(*g),
                    std::net::IpAddr::V6(_) => None,
                },
            ),
        };
        let spec = match specs
            .iter_mut()
            .position(|s| s.iface == m.iface() && s.port == port)
        {
            Some(i) => &mut specs[i],
            None => {
                specs.push(ReceiverSpec {
                    iface: m.iface().to_owned(),
                    port,
                    groups: Vec::new(),
                });
                let last = specs.len() - 1;
                &mut specs[last]
            }
        };
        if let Some(g) = group
            && !spec.groups.contains(&g)
        {
            spec.groups.push(g);
        }
    }
    specs
}

/// One received datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Its bytes.
    pub data: Vec<u8>,
    /// Sender address.
    pub src: SocketAddr,
    /// Arrival on CLOCK_MONOTONIC (the kernel's stamp, converted; the read time when the
    /// kernel gave none or it was unusable).
    pub arrival: Timestamp,
    /// When the daemon read it (CLOCK_MONOTONIC).
    pub read_at: Timestamp,
    /// `true` when `arrival` comes from the kernel's stamp.
    pub kernel_stamp: bool,
}

/// A socket receiving heartbeats on one interface and port.
#[derive(Debug)]
pub struct Receiver {
    iface: String,
    port: u16,
    fd: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
    cmsg: Vec<u8>,
}

impl Receiver {
    /// Opens and binds the socket. Must be called inside a tokio runtime.
    pub fn open(spec: &ReceiverSpec) -> Result<Self, NetError> {
        let iface = spec.iface.as_str();
        let fd = udp_socket(iface)?;
        setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(sock_err("SO_REUSEADDR", iface))?;
        setsockopt(&fd, sockopt::ReusePort, &true).map_err(sock_err("SO_REUSEPORT", iface))?;
        setsockopt(&fd, sockopt::ReceiveTimestampns, &true)
            .map_err(sock_err("SO_TIMESTAMPNS", iface))?;
        if !spec.groups.is_empty() {
            let index = ifindex(iface)?;
            for g in &spec.groups {
                set_mreqn(fd.as_fd(), libc::IP_ADD_MEMBERSHIP, *g, index)
                    .map_err(sock_err("IP_ADD_MEMBERSHIP", iface))?;
            }
        }
        let addr = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, spec.port));
        bind(fd.as_raw_fd(), &addr).map_err(sock_err("bind", iface))?;
        // SAFETY: an OwnedFd owns its descriptor: it stays open, and `as_raw_fd` returns the
        // same number, until the AsyncFd (which now owns the OwnedFd) is dropped.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| NetError::Register {
            iface: iface.to_owned(),
            source: e.into_parts().1,
        })?;
        Ok(Self {
            iface: iface.to_owned(),
            port: spec.port,
            fd,
            buf: vec![0; MAX_DATAGRAM],
            cmsg: nix::cmsg_space!(TimeSpec),
        })
    }

    /// Drops our own messages in the kernel: a datagram whose hb header (magic `HBd1`) names
    /// `local_id` as its sender is refused by a classic BPF socket filter before it is queued,
    /// so it neither wakes the loop nor costs a read. A `bcast` medium loops every datagram we
    /// send back to our own socket (the kernel always does for broadcast), and at
    /// `keepalive 1ms` that was one wake-up and three `recvmsg` calls per heartbeat for a
    /// message the core drops unread (its first check; it reports nothing for it). Anything
    /// else, hb message or not, passes as before (junk is still counted by the core).
    pub fn ignore_own(&self, local_id: u32) -> io::Result<()> {
        let prog = own_filter(local_id);
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr().cast_mut(),
        };
        // SAFETY: setsockopt with a valid sock_fprog pointing at `prog`, which outlives the
        // call (the kernel copies the program).
        let rc = unsafe {
            libc::setsockopt(
                self.fd.get_ref().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                std::ptr::from_ref(&fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Interface.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for the next datagram.
    pub async fn recv(&mut self) -> io::Result<Datagram> {
        loop {
            let mut guard = self.fd.readable().await?;
            match read_one(guard.get_inner().as_fd(), &mut self.buf, &mut self.cmsg) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                other => return other,
            }
        }
    }

    /// The next queued datagram, without waiting (`None`: nothing queued).
    pub fn try_recv(&mut self) -> io::Result<Option<Datagram>> {
        match read_one(self.fd.get_ref().as_fd(), &mut self.buf, &mut self.cmsg) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads every queued datagram (at most `max`) into `out` without waiting; returns how
    /// many were read. The loop drains before judging liveness.
    pub fn drain(&mut self, out: &mut Vec<Datagram>, max: usize) -> io::Result<usize> {
        let mut n = 0;
        while n < max {
            match self.try_recv()? {
                Some(d) => {
                    out.push(d);
                    n += 1;
                }
                None => break,
            }
        }
        Ok(n)
    }
}

/// The classic BPF program of [`Receiver::ignore_own`]. On a UDP socket the filter sees the
/// datagram from its UDP header: the hb message starts at offset 8, its magic at 8, its sender
/// id at 16 (`wire::OFF_SENDER`), loads are big-endian. Return 0 drops, `u32::MAX` keeps all.
fn own_filter(local_id: u32) -> [libc::sock_filter; 8] {
    const UDP_HLEN: u32 = 8;
    let magic = u32::from_be_bytes(hb_common::wire::MAGIC);
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let (ld, ldlen, jge, jeq, ret) = (
        libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
        libc::BPF_LD | libc::BPF_W | libc::BPF_LEN,
        libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
        libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
        libc::BPF_RET | libc::BPF_K,
    );
    let sender_end = UDP_HLEN + hb_common::wire::OFF_SENDER as u32 + 4;
    [
        // 0: shorter than the sender field: keep (the core counts it).
        op(ldlen, 0, 0, 0),
        op(jge, 0, 5, sender_end),
        // 2: not hb's magic: keep.
        op(ld, 0, 0, UDP_HLEN + hb_common::wire::OFF_MAGIC as u32),
        op(jeq, 0, 3, magic),
        // 4: our own id: drop; anything else: keep.
        op(ld, 0, 0, UDP_HLEN + hb_common::wire::OFF_SENDER as u32),
        op(jeq, 0, 1, local_id),
        op(ret, 0, 0, 0),
        op(ret, 0, 0, u32::MAX),
    ]
}

pub(crate) fn read_one(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    cmsg: &mut [u8],
) -> io::Result<Datagram> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn>(fd.as_raw_fd(), &mut iov, Some(cmsg), MsgFlags::MSG_DONTWAIT)
        .map_err(io::Error::from)?;
    let read_at = monotonic_now();
    let (offset, _) = realtime_offset();
    let mut stamp = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmTimestampns(ts) = c {
            stamp = Some(timespec_ns(ts));
        }
    }
    let src = msg
        .address
        .map(|a| SocketAddr::V4(SocketAddrV4::new(a.ip(), a.port())))
        .unwrap_or(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)));
    let len = msg.bytes.min(MAX_DATAGRAM);
    let arrival = stamp.and_then(|s| realtime_to_monotonic(s, offset, read_at));
    Ok(Datagram {
        data: iov[0][..len].to_vec(),
        src,
        arrival: arrival.unwrap_or(read_at),
        read_at,
        kernel_stamp: arrival.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_now_moves_forward() {
        let a = monotonic_now();
        let b = monotonic_now();
        assert!(a.as_nanos() > 0);
        assert!(b >= a);
    }

    #[test]
    fn realtime_conversion_bounds() {
        let read_at = Timestamp(100_000_000_000);
        let offset = 1_700_000_000_000_000_000i128;
        // 5 ms before the read.
        let real = (offset + 100_000_000_000 - 5_000_000) as u64;
        assert_eq!(
            realtime_to_monotonic(real, offset, read_at),
            Some(Timestamp(99_995_000_000))
        );
        // Within 1 us after the read: clamped to the read.
        assert_eq!(
            realtime_to_monotonic((offset + 100_000_000_500) as u64, offset, read_at),
            Some(read_at)
        );
        // Far after the read, or far before it: a clock step.
        assert_eq!(
            realtime_to_monotonic((offset + 100_010_000_000) as u64, offset, read_at),
            None
        );
        assert_eq!(
            realtime_to_monotonic((offset + 80_000_000_000) as u64, offset, read_at),
            None
        );
    }

    #[test]
    fn offset_is_measured_in_a_narrow_window() {
        let (offset, half_width) = realtime_offset();
        assert!(
            offset > 0,
            "REALTIME is ahead of MONOTONIC on a booted machine"
        );
        // A reading with a huge window would make the documented bound meaningless; a
        // preempted measurement can take long, so only an absurd width fails.
        assert!(half_width < 1_000_000_000);
    }

    #[test]
    fn receiver_specs_group_by_interface_and_port() {
        let media = vec![
            Media::Bcast {
                iface: "eth1".into(),
            },
            Media::Ucast {
                iface: "eth1".into(),
                addr: "10.0.0.2".parse().unwrap(),
            },
            Media::Mcast {
                iface: "eth2".into(),
                group: "239.0.0.1".parse().unwrap(),
                port: 694,
                ttl: 1,
                loopback: false,
            },
            Media::Mcast {
                iface: "eth2".into(),
                group: "239.0.0.2".parse().unwrap(),
                port: 700,
                ttl: 1,
                loopback: false,
            },
        ];
        let specs = receiver_specs(&media, 694);
        assert_eq!(
            specs,
            vec![
                ReceiverSpec {
                    iface: "eth1".into(),
                    port: 694,
                    groups: vec![]
                },
                ReceiverSpec {
                    iface: "eth2".into(),
                    port: 694,
                    groups: vec!["239.0.0.1".parse().unwrap()]
                },
                ReceiverSpec {
                    iface: "eth2".into(),
                    port: 700,
                    groups: vec!["239.0.0.2".parse().unwrap()]
                },
            ]
        );
    }

    #[test]
    fn send_error_labels() {
        assert_eq!(
            send_error_label(&io::Error::from_raw_os_error(libc::EPERM)),
            "send_eperm"
        );
        assert_eq!(
            send_error_label(&io::Error::from_raw_os_error(libc::ENOBUFS)),
            "send_enobufs"
        );
        assert_eq!(send_error_label(&io::Error::other("x")), "send_other");
    }
}
