//! Ctrl-C (SIGINT) and SIGTERM handling for the long-running commands (`run`, `bench`, `soak`;
//! `fuzz` catches SIGINT only): the signal sets a flag that [`check`] and [`sleep`] turn into an
//! error, so the caller returns and the labs' drops tear everything down.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Sets [`on_signal`] as the handler of `sig`.
fn catch(sig: libc::c_int) {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(sig, on_signal as *const () as libc::sighandler_t);
    }
}

/// Installs the SIGINT and SIGTERM handlers.
pub fn install() {
    catch(libc::SIGINT);
    catch(libc::SIGTERM);
}

/// Installs the SIGINT handler only (`fuzz`): Ctrl-C reaches the children in the terminal's
/// process group, which stop and report, while this process stays to print their figures;
/// SIGTERM still ends it at once.
pub fn install_sigint() {
    catch(libc::SIGINT);
}

/// Fails once Ctrl-C or SIGTERM arrived.
pub fn check() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted: tearing the lab down");
    }
    Ok(())
}

/// Sleeps `d`, failing early when interrupted.
pub fn sleep(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        check()?;
        std::thread::sleep(Duration::from_millis(5).min(end - Instant::now()));
    }
    check()
}
