//! `IPaddr`/`IPaddr2`: addresses added and removed with rtnetlink, and announced with gratuitous
//! ARP (IPv4) or unsolicited neighbour advertisements (IPv6) from a raw `AF_PACKET` socket
//! (pnet_datalink).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::TryStreamExt as _;
use rtnetlink::{
    Handle,
    packet_route::{
        address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage},
        link::LinkAttribute,
    },
};

use super::{
    now,
    packet::{ArpOp, gratuitous_arp, unsolicited_na},
};
use hb_proto::Timestamp;

/// errno values netlink answers with that mean "already done".
const EEXIST: i32 = libc::EEXIST;
const EADDRNOTAVAIL: i32 = libc::EADDRNOTAVAIL;
const ENOENT: i32 = libc::ENOENT;

/// Whether `addr` lies in `net/prefix`.
pub(crate) fn network_contains(net: IpAddr, prefix: u8, addr: IpAddr) -> bool {
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) if prefix <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if prefix <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// The local address of a dumped address message (IFA_LOCAL for IPv4, else IFA_ADDRESS).
fn local_address(msg: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(a) => return Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            _ => {}
        }
    }
    address
}

/// Heartbeat's findif: among the configured networks (`(ifindex, address, prefix)`), the one
/// with the longest prefix that contains `addr`, as `(ifindex, prefix)`. With `only_index`,
/// only that interface's networks count.
pub(crate) fn find_network(
    networks: &[(u32, IpAddr, u8)],
    addr: IpAddr,
    only_index: Option<u32>,
) -> Option<(u32, u8)> {
    networks
        .iter()
        .filter(|(index, _, _)| only_index.is_none_or(|i| i == *index))
        .filter(|(_, net, prefix)| network_contains(*net, *prefix, addr))
        .max_by_key(|(_, _, prefix)| *prefix)
        .map(|(index, _, prefix)| (*index, *prefix))
}

/// The netlink errno of an rtnetlink error, positive, if it is one.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

/// The agents' rtnetlink connection: its handle, and one address dump at a time on it. The
/// kernel runs one dump per netlink socket and answers a second one started meanwhile with
/// `EBUSY` (`Device or resource busy`), which the soak saw when a re-announcement's dump met a
/// start's or stop's on the shared connection. The lock is per connection: two agents (two
/// namespaces, as in the tests) do not wait for each other.
pub(crate) struct Netlink {
    pub(crate) handle: Handle,
    dump: tokio::sync::Mutex<()>,
}

impl Netlink {
    pub(crate) fn new(handle: Handle) -> Self {
        Self {
            handle,
            dump: tokio::sync::Mutex::new(()),
        }
    }
}

/// Every address on the node as `(ifindex, address, prefix)`, plus the raw messages.
pub(crate) async fn dump_addresses(
    netlink: &Netlink,
) -> Result<Vec<(u32, IpAddr, u8, AddressMessage)>, rtnetlink::Error> {
    let handle = &netlink.handle;
    let _one_at_a_time = netlink.dump.lock().await;
    let mut tries = 1;
    loop {
        // Bounded, so that one dump that never ends cannot hold every later one (a stop's).
        let attempt = tokio::time::timeout(DUMP_TIMEOUT, dump_addresses_once(handle))
            .await
            .unwrap_or_else(|_| {
                tracing::warn!("address dump: no answer in {DUMP_TIMEOUT:?}");
                Err(rtnetlink::Error::RequestFailed)
            });
        match attempt {
            // A dump still running on the socket (one begun elsewhere, or cut short): again.
            Err(e) if errno(&e) == Some(libc::EBUSY) && tries < DUMP_TRIES => {
                tries += 1;
                tokio::time::sleep(DUMP_PAUSE).await;
            }
            r => return r,
        }
    }
}

/// Tries of an address dump the kernel refuses with `EBUSY`, [`DUMP_PAUSE`] apart.
const DUMP_TRIES: u32 = 5;
const DUMP_PAUSE: Duration = Duration::from_millis(5);
/// Longest wait for one address dump.
const DUMP_TIMEOUT: Duration = Duration::from_secs(2);

async fn dump_addresses_once(
    handle: &Handle,
) -> Result<Vec<(u32, IpAddr, u8, AddressMessage)>, rtnetlink::Error> {
    let mut out = Vec::new();
    let mut stream = handle.address().get().execute();
    while let Some(msg) = stream.try_next().await? {
        if let Some(a) = local_address(&msg) {
            out.push((msg.header.index, a, msg.header.prefix_len, msg));
        }
    }
    Ok(out)
}

/// Interface index by name (`None` when there is no such interface).
pub(crate) async fn link_index(
    handle: &Handle,
    name: &str,
) -> Result<Option<u32>, rtnetlink::Error> {
    let mut stream = handle.link().get().match_name(name.to_owned()).execute();
    match stream.try_next().await {
        Ok(Some(msg)) => Ok(Some(msg.header.index)),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Name and MAC of the interface with `index`.
pub(crate) async fn link_info(
    handle: &Handle,
    index: u32,
) -> Result<(String, Option<[u8; 6]>), rtnetlink::Error> {
    let mut stream = handle.link().get().match_index(index).execute();
    let mut name = format!("if{index}");
    let mut mac = None;
    if let Some(msg) = stream.try_next().await? {
        for attr in msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => name = n,
                LinkAttribute::Address(a) => {
                    if let Ok(m) = <[u8; 6]>::try_from(a.as_slice())
                        && m != [0; 6]
                    {
                        mac = Some(m);
                    }
                }
                _ => {}
            }
        }
    }
    Ok((name, mac))
}

/// Adds `addr/prefix` on `index`; an address already present is success. IPv6 addresses are
/// added with `nodad` (usable at once, no duplicate address detection delay). `broadcast`
/// overrides the IPv4 broadcast rtnetlink derives from the prefix.
pub(crate) async fn add_address(
    handle: &Handle,
    index: u32,
    addr: IpAddr,
    prefix: u8,
    broadcast: Option<IpAddr>,
    label: Option<&str>,
) -> Result<(), rtnetlink::Error> {
    let mut req = handle.address().add(index, addr, prefix);
    let msg = req.message_mut();
    if let Some(label) = label {
        // IFA_LABEL (IPv4 only; the parser refuses labels on IPv6 addresses): what
        // `ifconfig eth0:0` and `ip addr add ... label eth0:0` set.
        msg.attributes
            .retain(|a| !matches!(a, AddressAttribute::Label(_)));
        msg.attributes
            .push(AddressAttribute::Label(label.to_owned()));
    }
    if let Some(IpAddr::V4(b)) = broadcast {
        msg.attributes
            .retain(|a| !matches!(a, AddressAttribute::Broadcast(_)));
        msg.attributes.push(AddressAttribute::Broadcast(b));
    }
    if addr.is_ipv6() {
        msg.header.flags |= AddressHeaderFlags::Nodad;
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    match req.execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(EEXIST) => {
            tracing::debug!("{addr}/{prefix} already present on ifindex {index}");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Removes every instance of `addr` (on `only_index` when given). Returns how many were
/// removed; an absent address is success (0).
pub(crate) async fn remove_address(
    netlink: &Netlink,
    addr: IpAddr,
    only_index: Option<u32>,
) -> Result<usize, rtnetlink::Error> {
    let handle = &netlink.handle;
    let mut removed = 0;
    for (index, a, _, msg) in dump_addresses(netlink).await? {
        if a != addr || only_index.is_some_and(|i| i != index) {
            continue;
        }
        match handle.address().del(msg).execute().await {
            Ok(()) => removed += 1,
            Err(e) if matches!(errno(&e), Some(EADDRNOTAVAIL | ENOENT)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// Interfaces (`ifindex`) that hold `addr` now.
pub(crate) async fn holders(netlink: &Netlink, addr: IpAddr) -> Result<Vec<u32>, rtnetlink::Error> {
    Ok(dump_addresses(netlink)
        .await?
        .into_iter()
        .filter(|(_, a, _, _)| *a == addr)
        .map(|(index, _, _, _)| index)
        .collect())
}

/// Sends announcements: the first at once, the repeats from a background task that is
/// cancelled when the address is released or announced afresh.
#[derive(Debug)]
pub(crate) struct Announcer {
    /// Announcements per address (each an ARP request and reply, or one NA); changed live by
    /// a reload ([`Announcer::set`]).
    count: std::sync::atomic::AtomicU32,
    /// Pause between announcements, in nanoseconds.
    interval_ns: std::sync::atomic::AtomicU64,
    /// Running repeat tasks by address, with a generation number so a finishing task removes
    /// only its own entry.
    repeats: Arc<Mutex<HashMap<IpAddr, (u64, tokio::task::AbortHandle)>>>,
    /// Next generation number.
    generation: std::sync::atomic::AtomicU64,
}

/// The frames announcing `addr` at `mac`.
pub(crate) fn frames(mac: [u8; 6], addr: IpAddr) -> Vec<Vec<u8>> {
    match addr {
        IpAddr::V4(v4) => vec![
            gratuitous_arp(mac, v4, ArpOp::Request).to_vec(),
            gratuitous_arp(mac, v4, ArpOp::Reply).to_vec(),
        ],
        IpAddr::V6(v6) => vec![unsolicited_na(mac, v6).to_vec()],
    }
}

/// A raw sender bound to one interface.
type Sender = Box<dyn pnet_datalink::DataLinkSender>;

/// A raw `AF_PACKET` socket for sending only: close-on-exec (resource scripts started while
/// announcements repeat must not inherit it), created with protocol 0 so it receives nothing
/// until bound, and given a classic BPF filter that drops every packet before pnet binds it
/// to all protocols, so the kernel queues no copies of the interface's traffic to it.
fn send_only_socket() -> std::io::Result<i32> {
    // SAFETY: socket(2) with constant arguments; the result is checked below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // One instruction: BPF_RET | BPF_K with k = 0, "accept 0 bytes", i.e. drop.
    let mut drop_all = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: drop_all.as_mut_ptr(),
    };
    // SAFETY: `prog` and the instruction it points to live across the call; the kernel copies
    // the filter; the option length is the size of `sock_fprog`.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const prog).cast::<libc::c_void>(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: `fd` is ours and not yet handed to anyone.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    Ok(fd)
}

/// Opens an `AF_PACKET` sender on the interface (blocking: call from a blocking context).
fn open_sender(index: u32, name: &str, mac: [u8; 6]) -> std::io::Result<Sender> {
    let iface = pnet_datalink::NetworkInterface {
        name: name.to_owned(),
        description: String::new(),
        index,
        mac: Some(pnet_datalink::MacAddr::from(mac)),
        ips: Vec::new(),
        flags: 0,
    };
    let config = pnet_datalink::Config {
        promiscuous: false,
        read_buffer_size: 64,
        write_timeout: Some(Duration::from_millis(100)),
        // pnet takes ownership (closes it on drop and on its own errors).
        socket_fd: Some(send_only_socket()?),
        ..Default::default()
    };
    match pnet_datalink::channel(&iface, config)? {
        pnet_datalink::Channel::Ethernet(tx, _rx) => Ok(tx),
        _ => Err(std::io::Error::other(
            "pnet returned a non-Ethernet channel",
        )),
    }
}

/// Sends every frame; blocking (a non-blocking socket polled for at most the write timeout).
/// Tries of one frame while the device's queue is full (`ENOBUFS`, seen in the soak on an
/// interface that had just come up), [`ENOBUFS_PAUSE`] apart.
const ENOBUFS_TRIES: u32 = 5;
const ENOBUFS_PAUSE: Duration = Duration::from_millis(2);

fn send_frames(tx: &mut Sender, frames: &[Vec<u8>]) -> std::io::Result<()> {
    for f in frames {
        let mut tries = 1;
        loop {
            match tx.send_to(f, None) {
                Some(Ok(())) => break,
                Some(Err(e))
                    if e.raw_os_error() == Some(libc::ENOBUFS) && tries < ENOBUFS_TRIES =>
                {
                    tries += 1;
                    std::thread::sleep(ENOBUFS_PAUSE);
                }
                Some(Err(e)) => return Err(e),
                None => return Err(std::io::Error::other("frame larger than the send buffer")),
            }
        }
    }
    Ok(())
}

impl Announcer {
    /// An announcer sending `count` announcements `interval` apart (at least one).
    pub fn new(count: u32, interval: Duration) -> Self {
        let a = Self {
            count: std::sync::atomic::AtomicU32::new(1),
            interval_ns: std::sync::atomic::AtomicU64::new(0),
            repeats: Arc::default(),
            generation: std::sync::atomic::AtomicU64::new(0),
        };
        a.set(count, interval);
        a
    }

    /// From now on, `count` announcements per address (at least one), `interval` apart.
    /// Repeats already running keep their settings.
    pub fn set(&self, count: u32, interval: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        self.count.store(count.max(1), Relaxed);
        self.interval_ns.store(
            u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX),
            Relaxed,
        );
    }

    /// Announcements per address.
    pub fn count(&self) -> u32 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Pause between announcements.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Stops the pending repeats for `addr`, if any.
    pub fn cancel(&self, addr: IpAddr) {
        let mut map = match self.repeats.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some((_, h)) = map.remove(&addr) {
            h.abort();
        }
    }

    /// Stops every pending repeat.
    pub fn cancel_all(&self) {
        let mut map = match self.repeats.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        for (_, (_, h)) in map.drain() {
            h.abort();
        }
    }

    /// Announces `addr` on the interface now and schedules the repeats. Returns when the first
    /// announcement is on the wire, with the time it was sent.
    pub async fn announce(
        &self,
        label: &str,
        index: u32,
        name: &str,
        mac: [u8; 6],
        addr: IpAddr,
    ) -> std::io::Result<Timestamp> {
        self.cancel(addr);
        let frames = frames(mac, addr);
        let owned_name = name.to_owned();
        let first_frames = frames.clone();
        let (tx, sent) = tokio::task::spawn_blocking(move || {
            let mut tx = open_sender(index, &owned_name, mac)?;
            send_frames(&mut tx, &first_frames)?;
            Ok::<_, std::io::Error>((tx, now()))
        })
        .await
        .map_err(|e| std::io::Error::other(format!("announce task: {e}")))??;
        tracing::debug!(
            resource = label,
            "announced {addr} on {name} (1/{})",
            self.count()
        );
        let count = self.count();
        if count > 1 {
            let interval = self.interval();
            let label = label.to_owned();
            let name = name.to_owned();
            let repeats = self.repeats.clone();
            let generation = self
                .generation
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Hold the map while spawning so the task cannot finish before it is registered.
            let mut map = match self.repeats.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            let task = tokio::spawn(async move {
                let mut tx = tx;
                for n in 2..=count {
                    tokio::time::sleep(interval).await;
                    let frames = frames.clone();
                    let res = tokio::task::spawn_blocking(move || {
                        let r = send_frames(&mut tx, &frames);
                        (tx, r)
                    })
                    .await;
                    match res {
                        Ok((back, Ok(()))) => {
                            tx = back;
                            tracing::debug!(resource = %label, "announced {addr} on {name} ({n}/{count})");
                        }
                        Ok((back, Err(e))) => {
                            tx = back;
                            tracing::warn!(resource = %label, "announcing {addr} on {name}: {e}");
                        }
                        Err(e) => {
                            tracing::warn!(resource = %label, "announce task for {addr}: {e}");
                            break;
                        }
                    }
                }
                let mut map = match repeats.lock() {
                    Ok(m) => m,
                    Err(p) => p.into_inner(),
                };
                if map.get(&addr).is_some_and(|(g, _)| *g == generation) {
                    map.remove(&addr);
                }
            });
            map.insert(addr, (generation, task.abort_handle()));
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(network_contains(a("10.0.0.1"), 24, a("10.0.0.200")));
        assert!(!network_contains(a("10.0.0.1"), 24, a("10.0.1.1")));
        assert!(network_contains(a("10.0.0.1"), 0, a("192.168.1.1")));
        assert!(network_contains(a("10.0.0.1"), 32, a("10.0.0.1")));
        assert!(!network_contains(a("10.0.0.1"), 32, a("10.0.0.2")));
        assert!(network_contains(a("2001:db8::1"), 64, a("2001:db8::ffff")));
        assert!(!network_contains(
            a("2001:db8::1"),
            64,
            a("2001:db8:0:1::1")
        ));
        assert!(!network_contains(a("10.0.0.1"), 8, a("::1")));
    }

    #[test]
    fn findif_prefers_longest_prefix() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        let nets = vec![
            (1, a("127.0.0.1"), 8),
            (2, a("10.0.0.1"), 16),
            (3, a("10.0.5.1"), 24),
            (3, a("2001:db8::1"), 64),
        ];
        assert_eq!(find_network(&nets, a("10.0.5.100"), None), Some((3, 24)));
        assert_eq!(find_network(&nets, a("10.0.9.100"), None), Some((2, 16)));
        assert_eq!(find_network(&nets, a("10.0.5.100"), Some(2)), Some((2, 16)));
        assert_eq!(find_network(&nets, a("2001:db8::64"), None), Some((3, 64)));
        assert_eq!(find_network(&nets, a("192.168.0.1"), None), None);
    }

    #[test]
    fn ipv4_announcement_is_request_then_reply() {
        let f = frames([2, 0, 0, 0, 0, 1], "10.1.2.3".parse().unwrap());
        assert_eq!(f.len(), 2);
        assert_eq!(&f[0][20..22], &[0, 1]);
        assert_eq!(&f[1][20..22], &[0, 2]);
        let f6 = frames([2, 0, 0, 0, 0, 1], "2001:db8::5".parse().unwrap());
        assert_eq!(f6.len(), 1);
        assert_eq!(f6[0][54], 136);
    }
}
