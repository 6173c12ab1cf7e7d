//! The generation rule: the number a node announces for one run of the daemon, strictly
//! increasing across restarts, so peers tell a restart from a replay. Pure arithmetic on the
//! state file's contents and the wall clock; reading and writing the file is the daemon's.

/// Bits of the generation below the wall-clock seconds: up to 2^20 starts within one second
/// still get increasing generations when the state file is lost.
pub const GENERATION_SECONDS_SHIFT: u32 = 20;

/// The generation for this start, and the state file's new contents.
///
/// `previous` is the state file's contents (`None` if it is missing; unreadable contents count
/// as missing); `now_wall_ns` is CLOCK_REALTIME in ns. The generation is the larger of the
/// stored generation + 1 and `wall-clock seconds << 20`. So it increases at every start while
/// the file is kept, and, if the file is lost, still exceeds every earlier generation as long as
/// the wall clock has moved forward by at least a second since the previous start (and the node
/// did not start more than 2^20 times in one second). The file holds the generation in decimal
/// followed by a newline.
pub fn next_generation(previous: Option<&[u8]>, now_wall_ns: u64) -> (u64, Vec<u8>) {
    let stored = previous
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    let generation = generation_after(stored, now_wall_ns / 1_000_000_000);
    (generation, format!("{generation}\n").into_bytes())
}

/// The rule behind [`next_generation`] on typed values: the generation that follows `stored`
/// (`None`: no state file, or unreadable) at wall-clock time `wall_secs` (seconds since 1970):
/// the larger of `stored + 1` and `wall_secs << 20`, never 0, saturating at `u64::MAX` instead
/// of wrapping. hbd's state directory code calls this.
pub fn generation_after(stored: Option<u64>, wall_secs: u64) -> u64 {
    let from_clock = wall_secs.saturating_mul(1 << GENERATION_SECONDS_SHIFT);
    match stored {
        Some(g) => g.saturating_add(1).max(from_clock),
        None => from_clock.max(1),
    }
}
