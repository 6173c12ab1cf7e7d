//! Announcement frames, built byte by byte: gratuitous ARP (request and reply forms, as
//! Heartbeat's `send_arp` sends them) and IPv6 unsolicited neighbour advertisements.
//!
//! Pure functions, no I/O: the announcer in the agents module puts them on the wire.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Ethernet broadcast address.
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Length of a gratuitous ARP frame: 14 bytes Ethernet + 28 bytes ARP, zero-padded to the
/// 60-byte Ethernet minimum (without FCS) so drivers that do not pad still send a valid frame.
pub const GARP_FRAME_LEN: usize = 60;
/// Length of an unsolicited NA frame: 14 Ethernet + 40 IPv6 + 24 NA + 8 target link-layer option.
pub const NA_FRAME_LEN: usize = 14 + 40 + 24 + 8;

/// ICMPv6 type of a neighbour advertisement.
const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;
/// NA flags word: Override set, Router and Solicited clear.
const NA_FLAG_OVERRIDE: u32 = 0x2000_0000;
/// NDP option type: target link-layer address.
const NDP_OPT_TARGET_LLADDR: u8 = 2;
/// IPv6 next header for ICMPv6.
const IPPROTO_ICMPV6: u8 = 58;

/// ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOp {
    /// `ARPOP_REQUEST` (1): target hardware address zero.
    Request,
    /// `ARPOP_REPLY` (2): target hardware address the sender's own.
    Reply,
}

/// A gratuitous ARP frame announcing `ip` at `mac`: Ethernet broadcast from `mac`, sender and
/// target protocol address both `ip`, sender hardware address `mac`.
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr, op: ArpOp) -> [u8; GARP_FRAME_LEN] {
    let mut f = [0u8; GARP_FRAME_LEN];
    f[0..6].copy_from_slice(&BROADCAST_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    // ARP: htype Ethernet, ptype IPv4, hlen 6, plen 4.
    f[14..16].copy_from_slice(&1u16.to_be_bytes());
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes());
    f[18] = 6;
    f[19] = 4;
    let (opcode, tha) = match op {
        ArpOp::Request => (1u16, [0u8; 6]),
        ArpOp::Reply => (2u16, mac),
    };
    f[20..22].copy_from_slice(&opcode.to_be_bytes());
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[32..38].copy_from_slice(&tha);
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// An unsolicited neighbour advertisement for `addr` at `mac`: Ethernet to `33:33:00:00:00:01`,
/// IPv6 from `addr` to `ff02::1` with hop limit 255, ICMPv6 type 136 with the Override flag,
/// target `addr`, and the target link-layer address option carrying `mac`.
pub fn unsolicited_na(mac: [u8; 6], addr: Ipv6Addr) -> [u8; NA_FRAME_LEN] {
    let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut f = [0u8; NA_FRAME_LEN];
    f[0..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    let ip = &mut f[14..54];
    ip[0] = 0x60; // version 6, traffic class 0, flow label 0
    let payload_len = (NA_FRAME_LEN - 54) as u16;
    ip[4..6].copy_from_slice(&payload_len.to_be_bytes());
    ip[6] = IPPROTO_ICMPV6;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&addr.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    let icmp = &mut f[54..];
    icmp[0] = ICMPV6_NEIGHBOR_ADVERT;
    icmp[1] = 0;
    // icmp[2..4]: checksum, filled below.
    icmp[4..8].copy_from_slice(&NA_FLAG_OVERRIDE.to_be_bytes());
    icmp[8..24].copy_from_slice(&addr.octets());
    icmp[24] = NDP_OPT_TARGET_LLADDR;
    icmp[25] = 1; // length in units of 8 bytes
    icmp[26..32].copy_from_slice(&mac);
    let sum = icmpv6_checksum(addr, dst, icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The ICMPv6 checksum (RFC 4443 section 2.3) of `icmp` (its checksum field taken as it is;
/// zero it before computing) over the IPv6 pseudo-header of `src`, `dst`.
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = u64::from(pair[0]) << 8;
            let lo = pair.get(1).copied().map_or(0, u64::from);
            sum += hi | lo;
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(icmp.len() as u32).to_be_bytes());
    add(&[0, 0, 0, IPPROTO_ICMPV6]);
    add(icmp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];

    #[test]
    fn garp_request_matches_test_vector() {
        let f = gratuitous_arp(MAC, Ipv4Addr::new(192, 168, 10, 100), ArpOp::Request);
        #[rustfmt::skip]
        let want: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, 192, 168, 10, 100,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 192, 168, 10, 100,
        ];
        assert_eq!(&f[..42], &want[..]);
        assert!(f[42..].iter().all(|b| *b == 0), "padding is zero");
        assert_eq!(f.len(), 60);
    }

    #[test]
    fn garp_reply_matches_test_vector() {
        let f = gratuitous_arp(MAC, Ipv4Addr::new(10, 0, 0, 1), ArpOp::Reply);
        #[rustfmt::skip]
        let want: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02,
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, 10, 0, 0, 1,
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, 10, 0, 0, 1,
        ];
        assert_eq!(&f[..42], &want[..]);
    }

    /// The vector was checked with `tcpdump -vv -r` on a pcap of these bytes: "[icmp6 sum ok]
    /// ICMP6, neighbor advertisement, length 32, tgt is 2001:db8::100, Flags [override]", link
    /// address option 02:00:5e:10:20:30.
    #[test]
    fn unsolicited_na_matches_test_vector() {
        let addr: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let f = unsolicited_na(MAC, addr);
        #[rustfmt::skip]
        let want: [u8; NA_FRAME_LEN] = [
            // Ethernet
            0x33, 0x33, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, 0x86, 0xdd,
            // IPv6: version, payload length 32, next header 58, hop limit 255
            0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff,
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00,
            0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x01,
            // ICMPv6 NA, checksum, flags (override)
            0x88, 0x00, CHECKSUM[0], CHECKSUM[1], 0x20, 0x00, 0x00, 0x00,
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00,
            // target link-layer address option
            0x02, 0x01, 0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,
        ];
        assert_eq!(&f[..], &want[..]);
    }

    /// Checksum of the NA above, computed independently (a Python one's-complement sum over
    /// pseudo-header and message) and confirmed by tcpdump ("[icmp6 sum ok]").
    const CHECKSUM: [u8; 2] = [0x78, 0xed];

    #[test]
    fn na_checksum_verifies_to_all_ones() {
        for text in ["2001:db8::100", "fe80::1", "fd00:ffff:ffff::ffff"] {
            let addr: Ipv6Addr = text.parse().unwrap();
            let f = unsolicited_na(MAC, addr);
            // Summing a packet including its correct checksum gives 0xffff, i.e. the
            // complement is zero.
            let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
            assert_eq!(icmpv6_checksum(addr, dst, &f[54..]), 0, "{text}");
        }
    }

    #[test]
    fn na_checksum_agrees_with_pnet() {
        use pnet_packet::{Packet, icmpv6::Icmpv6Packet};
        let addr: Ipv6Addr = "2001:db8:1:2::abcd".parse().unwrap();
        let f = unsolicited_na(MAC, addr);
        let icmp = Icmpv6Packet::new(&f[54..]).unwrap();
        let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        let theirs = pnet_packet::icmpv6::checksum(&icmp, &addr, &dst);
        assert_eq!(u16::from_be_bytes([f[56], f[57]]), theirs);
        assert_eq!(icmp.packet().len(), 32);
    }
}
