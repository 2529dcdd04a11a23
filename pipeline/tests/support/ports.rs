//! Loopback ports for the servers the tests start; included by every test harness.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Lowest port handed out.
const LOWEST: u16 = 10_000;

/// A loopback port nothing listens on (as of now), never the same one twice in this process.
///
/// The port comes from below the kernel's range for outgoing connections: a server binds its
/// port a while after the test chose it (a lone server once it has recovered; a cluster's
/// processes are started one after another), and a port from that range could meanwhile become
/// the local end of some outgoing connection — one of a cluster's own, say — so the server could
/// not bind it. Two ports asked for one after the other are never the same one either.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let outgoing = outgoing_range_start();
    if outgoing <= LOWEST + 1_000 {
        return ephemeral_port(&GIVEN);
    }
    let span = u32::from(outgoing - LOWEST);
    // Processes testing side by side start at different places.
    let start = std::process::id().wrapping_mul(7_919) % span;
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for step in 0..span {
        let port = LOWEST + ((start + given.len() as u32 + step) % span) as u16;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    drop(given);
    ephemeral_port(&GIVEN)
}

/// The first port of the kernel's range for outgoing connections (Linux's default when it
/// cannot be read).
fn outgoing_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A port the kernel chooses, when no port below its outgoing range is free.
fn ephemeral_port(given: &Mutex<BTreeSet<u16>>) -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind a free port")
            .port();
        if given.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}
