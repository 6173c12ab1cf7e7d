//! Client-side truth for the lab: an HTTP prober that requests the VIP from the client's
//! namespace every few milliseconds, a dual-owner sampler that watches every node's addresses and
//! the client's ARP entry for the VIP, and a gratuitous ARP sender.
//!
//! All times are CLOCK_MONOTONIC nanoseconds ([`crate::monotonic_ns`]), the clock hbd's `mono=`
//! log field uses, so probe samples and log lines line up.

use std::{
    fs::File,
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use nix::sched::CloneFlags;

use super::{Lab, Node, PAGE_PREFIX};
use crate::monotonic_ns;

/// Enters network namespace `ns` (by name) on the calling thread.
pub fn enter_netns(ns: &str) -> Result<()> {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).with_context(|| format!("opening {path}"))?;
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns({path})"))
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// What one probe got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A page naming this node.
    Served(Node),
    /// An HTTP answer that names no lab node (first line kept).
    Unexpected(String),
    /// No answer: connect or read failed or timed out (the error kept).
    Failed(String),
}

/// One probe: when it started and what it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSample {
    /// CLOCK_MONOTONIC ns when the probe started.
    pub at_ns: u64,
    /// What it got.
    pub outcome: Outcome,
}

/// Prober settings.
#[derive(Debug, Clone, Copy)]
pub struct ProbeConfig {
    /// Where to connect (the VIP, port 80).
    pub target: SocketAddrV4,
    /// Time between probe starts (default 5 ms).
    pub period: Duration,
    /// Timeout of one probe, connect and answer together (default 20 ms).
    pub timeout: Duration,
}

impl ProbeConfig {
    /// Probes `vip:80` every 5 ms with a 20 ms timeout.
    pub fn new(vip: Ipv4Addr) -> Self {
        Self {
            target: SocketAddrV4::new(vip, 80),
            period: Duration::from_millis(5),
            timeout: Duration::from_millis(20),
        }
    }
}

/// One HTTP probe: TCP connect, `GET /`, read the whole answer, find which node named itself.
pub fn probe_once(target: SocketAddrV4, timeout: Duration) -> Outcome {
    match probe_inner(target, timeout) {
        Ok(o) => o,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

fn probe_inner(target: SocketAddrV4, timeout: Duration) -> std::io::Result<Outcome> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&SocketAddr::V4(target), timeout)?;
    let left = timeout
        .saturating_sub(start.elapsed())
        .max(Duration::from_millis(1));
    s.set_read_timeout(Some(left))?;
    s.set_write_timeout(Some(left))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")?;
    let mut buf = Vec::with_capacity(512);
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    if let Some((_, rest)) = text.split_once(PAGE_PREFIX)
        && let Some(node) = Node::from_name(rest.split_whitespace().next().unwrap_or(""))
    {
        return Ok(Outcome::Served(node));
    }
    Ok(Outcome::Unexpected(
        text.lines().next().unwrap_or("(empty answer)").to_owned(),
    ))
}

/// Every probe of a run, in order, with the questions the scenarios ask.
#[derive(Debug, Clone, Default)]
pub struct ProbeLog {
    /// The samples, oldest first.
    pub samples: Vec<ProbeSample>,
}

/// A client-observed outage: last answer from the old owner to first from the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// Last answer from the old owner before the new one answered (ns).
    pub last_old_ns: u64,
    /// First answer from the new owner after the event (ns).
    pub first_new_ns: u64,
}

impl Outage {
    /// The outage's length.
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.first_new_ns.saturating_sub(self.last_old_ns))
    }
}

impl ProbeLog {
    /// The first sample at or after `after_ns` that `node` served.
    pub fn first_served_by(&self, node: Node, after_ns: u64) -> Option<u64> {
        self.samples
            .iter()
            .find(|s| s.at_ns >= after_ns && s.outcome == Outcome::Served(node))
            .map(|s| s.at_ns)
    }

    /// The last sample before `before_ns` that `node` served.
    pub fn last_served_by(&self, node: Node, before_ns: u64) -> Option<u64> {
        self.samples
            .iter()
            .rev()
            .find(|s| s.at_ns < before_ns && s.outcome == Outcome::Served(node))
            .map(|s| s.at_ns)
    }

    /// The outage of a move from `old` to `new` caused at `event_ns`: the first answer from
    /// `new` at or after `event_ns`, and the last from `old` before that.
    pub fn outage(&self, old: Node, new: Node, event_ns: u64) -> Option<Outage> {
        let first_new_ns = self.first_served_by(new, event_ns)?;
        let last_old_ns = self.last_served_by(old, first_new_ns)?;
        Some(Outage {
            last_old_ns,
            first_new_ns,
        })
    }

    /// Whether any answer after `after_ns` came from a node other than `owner` or failed.
    pub fn disturbed_after(&self, owner: Node, after_ns: u64) -> Vec<&ProbeSample> {
        self.samples
            .iter()
            .filter(|s| s.at_ns >= after_ns && s.outcome != Outcome::Served(owner))
            .collect()
    }

    /// The latest sample, if any.
    pub fn last(&self) -> Option<&ProbeSample> {
        self.samples.last()
    }
}

/// A running prober: a thread in the client's namespace probing the VIP.
#[derive(Debug)]
pub struct Prober {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<ProbeSample>>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Prober {
    /// Starts probing from the lab's client namespace.
    pub fn start(lab: &Lab, config: ProbeConfig) -> Result<Prober> {
        Self::start_in(&lab.client_netns(), config)
    }

    /// Starts probing from namespace `ns`.
    pub fn start_in(ns: &str, config: ProbeConfig) -> Result<Prober> {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let ns = ns.to_owned();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let stop = stop.clone();
            let samples = samples.clone();
            std::thread::Builder::new()
                .name("lab-prober".into())
                .spawn(move || -> Result<()> {
                    let entered = enter_netns(&ns);
                    let failed = entered.is_err();
                    let _ = ready_tx.send(entered.map_err(|e| format!("{e:#}")));
                    if failed {
                        return Ok(());
                    }
                    let mut next = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        let at_ns = monotonic_ns();
                        let outcome = probe_once(config.target, config.timeout);
                        samples
                            .lock()
                            .map_err(|_| anyhow!("probe log poisoned"))?
                            .push(ProbeSample { at_ns, outcome });
                        next += config.period;
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        } else {
                            next = now;
                        }
                    }
                    Ok(())
                })?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("prober: {e}"),
            Err(_) => bail!("prober thread died before entering {}", "the namespace"),
        }
        Ok(Prober {
            stop,
            samples,
            thread: Some(thread),
        })
    }

    /// A copy of the samples so far.
    pub fn snapshot(&self) -> ProbeLog {
        ProbeLog {
            samples: self.samples.lock().map(|s| s.clone()).unwrap_or_default(),
        }
    }

    /// Waits up to `timeout` for a probe at or after `after_ns` served by `node`; returns its time.
    pub fn wait_served_by(&self, node: Node, after_ns: u64, timeout: Duration) -> Option<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = self.snapshot().first_served_by(node, after_ns) {
                return Some(at);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops probing and returns every sample.
    pub fn stop(mut self) -> Result<ProbeLog> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().map_err(|_| anyhow!("prober thread panicked"))??;
        }
        Ok(self.snapshot())
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One sample of who holds the VIP.
///
/// The nodes cannot be read at one instant (the sampler enters one namespace after the other),
/// so a sample reads every node in `node` order and then every node but the last again: `n1`,
/// `n2`, `n1` in a two-node lab; `n1`, `n2`, `n3`, `n1`, `n2` in a three-node lab. Only a
/// sample in which one node held the VIP at both of its reads and another node at a read
/// between them counts as a dual owner ([`OwnerSample::is_dual`]): a move from `n1` to `n2`
/// that happens between two reads (n1 releases, then n2 adds) shows `n1` at the first read and
/// `n2` at the second, but not `n1` at the third, and is no dual owner. (A move the other way
/// cannot look like one either: the node that released it was read first, before the node
/// that added it.) With three nodes every pair of nodes has such a bracket: the read of the
/// later node of the pair in the first round lies between the two reads of the earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerSample {
    /// CLOCK_MONOTONIC ns of the sample's start (its first read).
    pub at_ns: u64,
    /// The reads in the order they were made (see above).
    pub reads: Vec<OwnerRead>,
    /// The MAC the client's ARP entry for the VIP points to (complete entries only).
    pub client_arp: Option<[u8; 6]>,
}

/// One read of an [`OwnerSample`]: whether `node` had the VIP at `at_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerRead {
    /// The node read.
    pub node: Node,
    /// CLOCK_MONOTONIC ns of the read.
    pub at_ns: u64,
    /// Whether the node had the VIP on an interface that is up and running (has carrier).
    pub held: bool,
}

/// The order in which a sample reads `nodes`: all of them, then all but the last again.
fn read_order(nodes: &[Node]) -> Vec<Node> {
    let mut order = nodes.to_vec();
    order.extend(nodes.iter().take(nodes.len().saturating_sub(1)));
    order
}

impl OwnerSample {
    /// Whether `node` held the VIP in this sample (at its first read).
    pub fn holds(&self, node: Node) -> bool {
        self.reads
            .iter()
            .find(|r| r.node == node)
            .is_some_and(|r| r.held)
    }

    /// The nodes that held the VIP at their first read, in `node` order.
    pub fn holders(&self) -> Vec<Node> {
        Node::UP_TO_THREE
            .into_iter()
            .filter(|&n| self.holds(n))
            .collect()
    }

    /// The time of the sample's last read.
    pub fn last_read_ns(&self) -> u64 {
        self.reads.last().map_or(self.at_ns, |r| r.at_ns)
    }

    /// Two nodes that held the VIP at one instant, if any: the first node held it at two of its
    /// reads and the second at a read between them.
    pub fn dual(&self) -> Option<(Node, Node)> {
        let r = &self.reads;
        (0..r.len()).filter(|&mid| r[mid].held).find_map(|mid| {
            let inner = r[mid].node;
            r[..mid]
                .iter()
                .filter(|a| a.held && a.node != inner)
                .find(|a| r[mid + 1..].iter().any(|b| b.node == a.node && b.held))
                .map(|a| (a.node, inner))
        })
    }

    /// Whether two or more nodes held the VIP at one instant ([`OwnerSample::dual`]).
    pub fn is_dual(&self) -> bool {
        self.dual().is_some()
    }

    /// What the sample saw, with times in ms relative to `t0_ns`, e.g. `n1 held the VIP at
    /// +10.2 ms, n2 did not hold it at +10.4 ms, n1 held it at +10.6 ms (held = ...)`.
    pub fn describe(&self, t0_ns: u64) -> String {
        let rel = |t: u64| format!("{:+.1} ms", (t as f64 - t0_ns as f64) / 1e6);
        let word = |held: bool| if held { "held" } else { "did not hold" };
        let reads: Vec<String> = self
            .reads
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let what = if i == 0 { "the VIP" } else { "it" };
                format!("{} {} {what} at {}", r.node, word(r.held), rel(r.at_ns))
            })
            .collect();
        format!(
            "{} (held = configured on an interface that was up and running)",
            reads.join(", ")
        )
    }
}

/// Everything the dual-owner sampler saw.
#[derive(Debug, Clone, Default)]
pub struct OwnerLog {
    /// The samples, oldest first.
    pub samples: Vec<OwnerSample>,
    /// Every sampled node's `eth1` MAC, to name the owner of the client's ARP entry.
    pub macs: Vec<(Node, [u8; 6])>,
}

impl OwnerLog {
    /// Samples in which two or more nodes held the VIP at one instant
    /// ([`OwnerSample::is_dual`]).
    pub fn dual_owner(&self) -> Vec<&OwnerSample> {
        self.samples.iter().filter(|s| s.is_dual()).collect()
    }

    /// Samples in `[from_ns, to_ns)` in which two or more nodes held the VIP.
    pub fn dual_owner_between(&self, from_ns: u64, to_ns: u64) -> Vec<&OwnerSample> {
        self.dual_owner()
            .into_iter()
            .filter(|s| s.at_ns >= from_ns && s.at_ns < to_ns)
            .collect()
    }

    /// The node the client's ARP entry pointed to in `s`.
    pub fn arp_owner(&self, s: &OwnerSample) -> Option<Node> {
        let mac = s.client_arp?;
        self.macs.iter().find(|(_, m)| *m == mac).map(|(n, _)| *n)
    }

    /// The first sample at or after `after_ns` whose client ARP entry points at `node`.
    pub fn first_arp_to(&self, node: Node, after_ns: u64) -> Option<u64> {
        self.samples
            .iter()
            .find(|s| s.at_ns >= after_ns && self.arp_owner(s) == Some(node))
            .map(|s| s.at_ns)
    }
}

/// A running dual-owner sampler: one thread that enters every node's namespace (in the order of
/// [`OwnerSample`]) and reads the client's ARP table every few milliseconds.
#[derive(Debug)]
pub struct OwnerSampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<OwnerSample>>>,
    macs: Vec<(Node, [u8; 6])>,
    thread: Option<JoinHandle<Result<()>>>,
}

/// Whether the calling thread's namespace has `ip` on an interface that can answer for it (up
/// and running: a node whose links are down, or dead, does not count).
fn holds_addr(ip: Ipv4Addr) -> Result<bool> {
    use nix::net::if_::InterfaceFlags as F;
    let addrs = nix::ifaddrs::getifaddrs().context("getifaddrs")?;
    Ok(addrs.into_iter().any(|a| {
        a.flags.contains(F::IFF_UP | F::IFF_RUNNING)
            && a.address
                .is_some_and(|s| s.as_sockaddr_in().is_some_and(|s| s.ip() == ip))
    }))
}

/// The MAC of a complete entry for `ip` in `/proc/net/arp` text.
pub fn arp_entry(text: &str, ip: Ipv4Addr) -> Option<[u8; 6]> {
    let ip = ip.to_string();
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // IP address, HW type, Flags, HW address, Mask, Device; flag 0x2 = complete.
        let flags = u32::from_str_radix(f.get(2)?.trim_start_matches("0x"), 16).ok()?;
        (f.first() == Some(&ip.as_str()) && flags & 0x2 != 0)
            .then(|| parse_mac(f.get(3)?))
            .flatten()
    })
}

impl OwnerSampler {
    /// Starts sampling the lab's nodes ([`Lab::nodes`]) every `period`.
    pub fn start(lab: &Lab, period: Duration) -> Result<OwnerSampler> {
        let nodes = lab.nodes();
        let macs = nodes
            .iter()
            .map(|&n| Ok((n, lab.node_mac(n, 1)?)))
            .collect::<Result<Vec<_>>>()?;
        let order = read_order(nodes);
        let nss: Vec<(Node, String)> = nodes.iter().map(|&n| (n, lab.netns(n))).collect();
        let client = lab.client_netns();
        let vip = lab.vip();
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let stop = stop.clone();
            let samples = samples.clone();
            std::thread::Builder::new()
                .name("lab-owners".into())
                .spawn(move || -> Result<()> {
                    let setup = (|| -> Result<(File, Vec<(Node, File)>)> {
                        enter_netns(&client)?;
                        // The thread's own view: /proc/self/net would show the process's.
                        let arp = File::open("/proc/thread-self/net/arp")
                            .context("opening /proc/thread-self/net/arp")?;
                        let files = nss
                            .iter()
                            .map(|(n, ns)| {
                                File::open(format!("/run/netns/{ns}"))
                                    .with_context(|| format!("opening namespace {ns}"))
                                    .map(|f| (*n, f))
                            })
                            .collect::<Result<Vec<_>>>()?;
                        Ok((arp, files))
                    })();
                    let (mut arp, ns_files) = match setup {
                        Ok(v) => {
                            let _ = ready_tx.send(Ok(()));
                            v
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("{e:#}")));
                            return Ok(());
                        }
                    };
                    let mut next = Instant::now();
                    let mut text = String::new();
                    while !stop.load(Ordering::Relaxed) {
                        let mut reads = Vec::with_capacity(order.len());
                        for &node in &order {
                            let Some((_, f)) = ns_files.iter().find(|(n, _)| *n == node) else {
                                bail!("no namespace file for {node}");
                            };
                            nix::sched::setns(f, CloneFlags::CLONE_NEWNET)?;
                            let at_ns = monotonic_ns();
                            let held = holds_addr(vip)?;
                            reads.push(OwnerRead { node, at_ns, held });
                        }
                        // The ARP file stays bound to the client's namespace it was opened in.
                        text.clear();
                        arp.seek(SeekFrom::Start(0))?;
                        arp.read_to_string(&mut text)?;
                        let client_arp = arp_entry(&text, vip);
                        samples
                            .lock()
                            .map_err(|_| anyhow!("owner log poisoned"))?
                            .push(OwnerSample {
                                at_ns: reads.first().map_or(0, |r| r.at_ns),
                                reads,
                                client_arp,
                            });
                        next += period;
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        } else {
                            next = now;
                        }
                    }
                    Ok(())
                })?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("owner sampler: {e}"),
            Err(_) => bail!("owner sampler thread died during setup"),
        }
        Ok(OwnerSampler {
            stop,
            samples,
            macs,
            thread: Some(thread),
        })
    }

    /// A copy of the samples so far.
    pub fn snapshot(&self) -> OwnerLog {
        OwnerLog {
            samples: self.samples.lock().map(|s| s.clone()).unwrap_or_default(),
            macs: self.macs.clone(),
        }
    }

    /// Stops sampling and returns every sample.
    pub fn stop(mut self) -> Result<OwnerLog> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().map_err(|_| anyhow!("owner sampler panicked"))??;
        }
        Ok(self.snapshot())
    }
}

impl Drop for OwnerSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One ARP packet the client received that claims the VIP (a reply or a gratuitous ARP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpSeen {
    /// CLOCK_MONOTONIC ns when it was read.
    pub at_ns: u64,
    /// The sender hardware address in the ARP payload.
    pub sender_mac: [u8; 6],
    /// ARP operation: 1 request (gratuitous), 2 reply.
    pub oper: u16,
}

/// ARP packets claiming the VIP that the client saw.
#[derive(Debug, Clone, Default)]
pub struct ArpLog {
    /// The packets, oldest first.
    pub seen: Vec<ArpSeen>,
    /// Every node's `eth1` MAC.
    pub macs: Vec<(Node, [u8; 6])>,
}

impl ArpLog {
    /// The node that sent `a` (by MAC).
    pub fn sender(&self, a: &ArpSeen) -> Option<Node> {
        self.macs
            .iter()
            .find(|(_, m)| *m == a.sender_mac)
            .map(|(n, _)| *n)
    }

    /// Nodes that claimed the VIP in `[from_ns, to_ns)`.
    pub fn claimants(&self, from_ns: u64, to_ns: u64) -> Vec<Node> {
        let mut nodes: Vec<Node> = self
            .seen
            .iter()
            .filter(|a| a.at_ns >= from_ns && a.at_ns < to_ns)
            .filter_map(|a| self.sender(a))
            .collect();
        nodes.sort_by_key(|n| n.index());
        nodes.dedup();
        nodes
    }
}

/// The sender MAC and operation of an ARP frame (Ethernet header included) whose sender IP is
/// `ip`.
pub fn arp_claim(frame: &[u8], ip: Ipv4Addr) -> Option<([u8; 6], u16)> {
    if frame.len() < 42 || frame[12..14] != [0x08, 0x06] || frame[28..32] != ip.octets() {
        return None;
    }
    let oper = u16::from_be_bytes([frame[20], frame[21]]);
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&frame[22..28]);
    Some((mac, oper))
}

/// A running watcher of the ARP packets the client receives for the VIP (a raw AF_PACKET
/// socket in the client's namespace).
#[derive(Debug)]
pub struct ArpWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<ArpSeen>>>,
    macs: Vec<(Node, [u8; 6])>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl ArpWatch {
    /// Starts watching on the lab's client.
    pub fn start(lab: &Lab) -> Result<ArpWatch> {
        let macs = lab
            .nodes()
            .iter()
            .map(|&n| Ok((n, lab.node_mac(n, 1)?)))
            .collect::<Result<Vec<_>>>()?;
        let client = lab.client_netns();
        let vip = lab.vip();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let stop = stop.clone();
            let seen = seen.clone();
            std::thread::Builder::new()
                .name("lab-arp".into())
                .spawn(move || -> Result<()> {
                    let setup = (|| -> Result<std::os::fd::OwnedFd> {
                        enter_netns(&client)?;
                        let proto = i32::from((libc::ETH_P_ARP as u16).to_be());
                        // SAFETY: plain socket(2) call; the result is checked.
                        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto) };
                        if fd < 0 {
                            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
                        }
                        // SAFETY: fd is a socket we own from here on.
                        Ok(unsafe {
                            <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
                        })
                    })();
                    let fd = match setup {
                        Ok(fd) => {
                            let _ = ready_tx.send(Ok(()));
                            fd
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("{e:#}")));
                            return Ok(());
                        }
                    };
                    let sock = std::net::UdpSocket::from(fd);
                    // Only for the timeout: recv on the raw socket goes through the same fd.
                    sock.set_read_timeout(Some(Duration::from_millis(20)))?;
                    let mut buf = [0u8; 128];
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(n) = sock.recv(&mut buf) else {
                            continue;
                        };
                        let at_ns = monotonic_ns();
                        if let Some((sender_mac, oper)) = arp_claim(&buf[..n], vip) {
                            seen.lock()
                                .map_err(|_| anyhow!("ARP log poisoned"))?
                                .push(ArpSeen {
                                    at_ns,
                                    sender_mac,
                                    oper,
                                });
                        }
                    }
                    Ok(())
                })?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("ARP watch: {e}"),
            Err(_) => bail!("ARP watch thread died during setup"),
        }
        Ok(ArpWatch {
            stop,
            seen,
            macs,
            thread: Some(thread),
        })
    }

    /// A copy of what was seen so far.
    pub fn snapshot(&self) -> ArpLog {
        ArpLog {
            seen: self.seen.lock().map(|s| s.clone()).unwrap_or_default(),
            macs: self.macs.clone(),
        }
    }

    /// Stops watching and returns what was seen.
    pub fn stop(mut self) -> Result<ArpLog> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().map_err(|_| anyhow!("ARP watch panicked"))??;
        }
        Ok(self.snapshot())
    }
}

impl Drop for ArpWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The 42-byte gratuitous ARP request (sender = target = `ip`, to broadcast) from `mac`,
/// padded to the 60-byte Ethernet minimum.
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    // Target hardware address stays zero.
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// Sends one gratuitous ARP for `ip` out of `ifname` in namespace `ns` (raw AF_PACKET socket
/// on a thread that enters the namespace). Returns the CLOCK_MONOTONIC ns of the send.
pub fn send_garp(ns: &str, ifname: &str, ip: Ipv4Addr) -> Result<u64> {
    let ns = ns.to_owned();
    let ifname = ifname.to_owned();
    std::thread::spawn(move || -> Result<u64> {
        enter_netns(&ns)?;
        let (ifindex, mac) = nix::ifaddrs::getifaddrs()?
            .filter(|a| a.interface_name == ifname)
            .find_map(|a| {
                let link = *a.address?.as_link_addr()?;
                Some((link.ifindex(), link.addr()?))
            })
            .with_context(|| format!("no link address for {ifname} in {ns}"))?;
        let frame = garp_frame(mac, ip);
        let proto = (libc::ETH_P_ARP as u16).to_be();
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        if fd < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        // SAFETY: fd is a socket we own from here on; OwnedFd closes it.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = i32::try_from(ifindex)?;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        let at = monotonic_ns();
        // SAFETY: frame and sll outlive the call; the lengths are theirs.
        let n = unsafe {
            libc::sendto(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            bail!(
                "sending gratuitous ARP: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(at)
    })
    .join()
    .map_err(|_| anyhow!("GARP thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_entry_finds_complete_entries_only() {
        let text = "IP address       HW type     Flags       HW address            Mask     Device\n\
                    10.213.7.100     0x1         0x2         02:aa:bb:cc:dd:01     *        eth1\n\
                    10.213.7.2       0x1         0x0         00:00:00:00:00:00     *        eth1\n";
        assert_eq!(
            arp_entry(text, Ipv4Addr::new(10, 213, 7, 100)),
            Some([2, 0xaa, 0xbb, 0xcc, 0xdd, 1])
        );
        assert_eq!(arp_entry(text, Ipv4Addr::new(10, 213, 7, 2)), None);
        assert_eq!(arp_entry(text, Ipv4Addr::new(10, 213, 7, 9)), None);
    }

    #[test]
    fn outage_is_first_new_answer_minus_last_old_answer() {
        let s = |at, o| ProbeSample {
            at_ns: at,
            outcome: o,
        };
        let log = ProbeLog {
            samples: vec![
                s(100, Outcome::Served(Node::N1)),
                s(200, Outcome::Served(Node::N1)),
                s(300, Outcome::Failed("timed out".into())),
                s(400, Outcome::Failed("timed out".into())),
                s(500, Outcome::Served(Node::N2)),
                s(600, Outcome::Served(Node::N2)),
            ],
        };
        let o = log.outage(Node::N1, Node::N2, 250).expect("outage");
        assert_eq!((o.last_old_ns, o.first_new_ns), (200, 500));
        assert_eq!(o.duration(), Duration::from_nanos(300));
        assert_eq!(log.outage(Node::N2, Node::N1, 0), None);
        assert_eq!(log.disturbed_after(Node::N2, 500).len(), 0);
        assert_eq!(log.disturbed_after(Node::N1, 150).len(), 4);
    }

    #[test]
    fn garp_frame_is_a_broadcast_request_for_the_address() {
        let f = garp_frame([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[28..32], &[10, 1, 2, 3]);
        assert_eq!(&f[38..42], &[10, 1, 2, 3]);
        assert_eq!(&f[32..38], &[0; 6]);
    }

    #[test]
    fn arp_claim_reads_sender_of_frames_for_the_address() {
        let ip = Ipv4Addr::new(10, 1, 2, 3);
        let f = garp_frame([2, 0, 0, 0, 0, 1], ip);
        assert_eq!(arp_claim(&f, ip), Some(([2, 0, 0, 0, 0, 1], 1)));
        assert_eq!(arp_claim(&f, Ipv4Addr::new(10, 1, 2, 4)), None);
        assert_eq!(arp_claim(&f[..30], ip), None);
    }

    #[test]
    fn a_move_between_two_reads_is_no_dual_owner() {
        let s = |n1, n2, n1_again| sample(&[(Node::N1, n1), (Node::N2, n2), (Node::N1, n1_again)]);
        // n1 released and n2 added between the first and the second read.
        assert!(!s(true, true, false).is_dual());
        assert!(s(true, true, true).is_dual());
        assert_eq!(s(true, true, true).dual(), Some((Node::N1, Node::N2)));
        assert!(!s(true, false, true).is_dual());
        let log = OwnerLog {
            samples: vec![s(true, true, false), s(true, true, true)],
            macs: Vec::new(),
        };
        assert_eq!(log.dual_owner().len(), 1);
        assert_eq!(
            s(true, true, true).describe(500_000),
            "n1 held the VIP at +0.5 ms, n2 held it at +1.0 ms, n1 held it at +1.5 ms \
             (held = configured on an interface that was up and running)"
        );
        assert!(
            s(true, false, true)
                .describe(3_000_000)
                .contains("n2 did not hold it at -1.5 ms")
        );
        assert_eq!(s(true, true, false).holders(), vec![Node::N1, Node::N2]);
        assert_eq!(s(true, true, false).last_read_ns(), 2_000_000);
    }

    /// A sample from reads 0.5 ms apart starting at 1 ms.
    fn sample(reads: &[(Node, bool)]) -> OwnerSample {
        OwnerSample {
            at_ns: 1_000_000,
            reads: reads
                .iter()
                .zip(0u64..)
                .map(|(&(node, held), i)| OwnerRead {
                    node,
                    at_ns: 1_000_000 + i * 500_000,
                    held,
                })
                .collect(),
            client_arp: None,
        }
    }

    #[test]
    fn three_nodes_every_pair_is_bracketed_and_a_single_move_is_no_dual_owner() {
        let nodes = Node::UP_TO_THREE;
        let order = read_order(&nodes);
        assert_eq!(
            order,
            vec![Node::N1, Node::N2, Node::N3, Node::N1, Node::N2]
        );
        assert_eq!(read_order(&Node::ALL), vec![Node::N1, Node::N2, Node::N1]);
        let with = |held: &dyn Fn(usize, Node) -> bool| {
            sample(
                &order
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| (n, held(i, n)))
                    .collect::<Vec<_>>(),
            )
        };
        // Two nodes holding it all along are flagged, whichever the pair.
        for a in nodes {
            for b in nodes.into_iter().filter(|&b| b != a) {
                let s = with(&|_, n| n == a || n == b);
                assert!(s.is_dual(), "{a} and {b}: {}", s.describe(0));
            }
        }
        // One node holding it all along, or nobody: no dual owner.
        for a in nodes {
            assert!(!with(&|_, n| n == a).is_dual());
        }
        assert!(!with(&|_, _| false).is_dual());
        // A single move from any node to any other (the old owner releases, then the new one
        // adds), between any two consecutive reads: no dual owner.
        for from in nodes {
            for to in nodes.into_iter().filter(|&t| t != from) {
                for cut in 1..order.len() {
                    let s = with(&|i, n| if i < cut { n == from } else { n == to });
                    assert!(
                        !s.is_dual(),
                        "move {from} -> {to} before read {cut}: {}",
                        s.describe(0)
                    );
                }
            }
        }
        // Three holders at once.
        assert!(with(&|_, _| true).is_dual());
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(parse_mac("02:0a:ff:00:10:01"), Some([2, 10, 255, 0, 16, 1]));
        assert_eq!(parse_mac("02:0a:ff:00:10"), None);
        assert_eq!(parse_mac("02:0a:ff:00:10:01:02"), None);
    }
}
