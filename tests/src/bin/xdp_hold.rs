//! Test-only holder: loads hb's XDP program, attaches it to `IFACE` in the current network
//! namespace, prints `attached <mode>` and sleeps until killed. Used (through `ip netns exec`) to
//! check that nothing stays attached after the process is killed with SIGKILL.
//!
//! Usage: `xdp_hold IFACE [PORT]`

use std::io::Write as _;

use anyhow::{Context as _, Result};
use hb_daemon::xdp::XdpHandle;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let iface = args.next().context("usage: xdp_hold IFACE [PORT]")?;
    let port: u16 = match args.next() {
        Some(p) => p.parse().context("PORT")?,
        None => 694,
    };
    let mut handle = XdpHandle::load(port, true)?;
    let mode = handle.attach(&iface)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "attached {mode}")?;
    out.flush()?;
    drop(out);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
