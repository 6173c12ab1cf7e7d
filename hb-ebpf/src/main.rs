//! hb's XDP program.
//!
//! Stamps every hb heartbeat with `bpf_ktime_get_ns()` as the driver hands it over and delivers it
//! to `hbd` through the `EVENTS` ring buffer. It never harms traffic: anything it cannot deliver
//! (not a heartbeat, malformed, ring buffer full) passes untouched and is counted.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray, RingBuf},
    programs::XdpContext,
};
use hb_common::{EVENT_PACKET, FAMILY_V4, RING_DATA_LEN, RingEvent, XdpConfig, counter, wire};

/// Heartbeats for the daemon (1 MiB).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Index 0: the daemon's configuration.
#[map]
static CONFIG: Array<XdpConfig> = Array::with_max_entries(1, 0);

/// Global counters, see `hb_common::counter`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IPPROTO_UDP: u8 = 17;
const UDP_HLEN: usize = 8;

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

#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*const T, ()> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return Err(());
    }
    Ok((start + offset) as *const T)
}

#[inline(always)]
fn try_hb_xdp(ctx: &XdpContext) -> Result<u32, ()> {
    let port = match CONFIG.get(0) {
        Some(cfg) if cfg.udp_port != 0 => cfg.udp_port,
        _ => return Ok(xdp_action::XDP_PASS),
    };
    // SAFETY: ptr_at bounds-checked every read below against data_end.
    let ethertype = u16::from_be(unsafe { *ptr_at::<u16>(ctx, 12)? });
    if ethertype != ETH_P_IP {
        bump(counter::NOT_HEARTBEAT);
        return Ok(xdp_action::XDP_PASS);
    }
    let vihl: u8 = unsafe { *ptr_at::<u8>(ctx, ETH_HLEN)? };
    let ihl = ((vihl & 0x0f) as usize) * 4;
    let proto: u8 = unsafe { *ptr_at::<u8>(ctx, ETH_HLEN + 9)? };
    if proto != IPPROTO_UDP || ihl < 20 || ihl > 60 {
        bump(counter::NOT_HEARTBEAT);
        return Ok(xdp_action::XDP_PASS);
    }
    let src: [u8; 4] = unsafe { *ptr_at::<[u8; 4]>(ctx, ETH_HLEN + 12)? };
    let udp = ETH_HLEN + ihl;
    let sport = u16::from_be(unsafe { *ptr_at::<u16>(ctx, udp)? });
    let dport = u16::from_be(unsafe { *ptr_at::<u16>(ctx, udp + 2)? });
    if dport != port {
        bump(counter::NOT_HEARTBEAT);
        return Ok(xdp_action::XDP_PASS);
    }
    let payload = udp + UDP_HLEN;
    let total = ctx.data_end() - ctx.data();
    if total <= payload {
        bump(counter::PARSE_FAIL);
        return Ok(xdp_action::XDP_PASS);
    }
    let len = total - payload;
    if len > RING_DATA_LEN || len < wire::HEADER_LEN {
        bump(counter::PARSE_FAIL);
        return Ok(xdp_action::XDP_PASS);
    }
    let Some(mut entry) = EVENTS.reserve::<RingEvent>(0) else {
        bump(counter::RING_FULL);
        return Ok(xdp_action::XDP_PASS);
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved, exclusively owned RingEvent slot.
    unsafe {
        (*ev).kind = EVENT_PACKET;
        (*ev).ifindex = (*ctx.ctx).ingress_ifindex;
        (*ev).ktime_ns = aya_ebpf::helpers::bpf_ktime_get_ns();
        (*ev).family = FAMILY_V4;
        (*ev).src_port = sport;
        (*ev).dst_port = dport;
        (*ev).src_addr = [0; 16];
        (*ev).src_addr[0] = src[0];
        (*ev).src_addr[1] = src[1];
        (*ev).src_addr[2] = src[2];
        (*ev).src_addr[3] = src[3];
        (*ev).sender = 0;
        (*ev).len = len as u32;
    }
    // (len - 1) & mask + 1 == len for 1..=RING_DATA_LEN, and tells the verifier copy is in
    // 1..=RING_DATA_LEN (a power of two).
    let mask = RING_DATA_LEN - 1;
    let copy = ((len - 1) & mask) + 1;
    // SAFETY: copy is bounded by RING_DATA_LEN and by the packet length.
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
    entry.submit(0);
    bump(counter::DELIVERED);
    let consume = CONFIG.get(0).map(|c| c.consume != 0).unwrap_or(false);
    Ok(if consume {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    })
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
