//! Listening TCP sockets of the agent's own network namespace, from `NETLINK_SOCK_DIAG`.
//!
//! Asked for listening sockets only, the kernel walks just its listening hash; reading
//! `/proc/net/tcp{,6}` walks every bucket of the established hash each time, which was most of
//! the discovery scan's CPU (and of the idle agent's). A netlink socket answers for the
//! namespace it was created in, so other namespaces still go through `/proc/<pid>/net/tcp`.
use std::io;

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

/// `(inode, port)` of every listening TCP socket (IPv4 and IPv6) in this process's netns.
pub fn listening_tcp() -> io::Result<Vec<(u64, u16)>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut out = Vec::new();
    for (family, id) in [(AF_INET, SocketId::new_v4()), (AF_INET6, SocketId::new_v6())] {
        dump(&socket, family, id, &mut out)?;
    }
    Ok(out)
}

fn dump(socket: &Socket, family: u8, socket_id: SocketId, out: &mut Vec<(u64, u16)>) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let request = SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol: IPPROTO_TCP,
        extensions: ExtensionFlags::empty(),
        states: StateFlags::LISTEN,
        socket_id,
    });
    let mut packet = NetlinkMessage::new(header, request.into());
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;

    // A dump comes in datagrams of several messages each; this is larger than any the kernel
    // sends (it sizes them to at most 32 KiB).
    let mut recv = vec![0u8; 64 << 10];
    loop {
        let n = socket.recv(&mut &mut recv[..], 0)?;
        let mut offset = 0;
        while offset < n {
            let msg = NetlinkMessage::<SockDiagMessage>::deserialize(&recv[offset..n])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag reply: {e}")))?;
            match msg.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) if r.header.inode != 0 => {
                    out.push((u64::from(r.header.inode), r.header.socket_id.source_port));
                }
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => {
                    return Err(e.code.map_or_else(
                        || io::Error::other("sock_diag error without a code"),
                        |c| io::Error::from_raw_os_error(-c.get()),
                    ))
                }
                _ => {}
            }
            let len = msg.header.length as usize;
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;

    use super::*;

    fn inode(fd: &impl AsRawFd) -> u64 {
        nix::sys::stat::fstat(fd.as_raw_fd()).expect("fstat").st_ino
    }

    /// Needs no privilege: any process may list its own namespace's sockets.
    #[test]
    fn finds_our_listeners_with_their_inodes_and_ports() {
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = TcpListener::bind("[::1]:0").ok(); // IPv6 may be disabled
        let found = listening_tcp().expect("sock_diag dump");
        assert!(found.contains(&(inode(&v4), v4.local_addr().unwrap().port())), "{found:?}");
        if let Some(v6) = v6 {
            assert!(found.contains(&(inode(&v6), v6.local_addr().unwrap().port())), "{found:?}");
        }
        // A connected socket is not listening.
        let c = std::net::TcpStream::connect(v4.local_addr().unwrap()).unwrap();
        let (s, _) = v4.accept().unwrap();
        let again = listening_tcp().unwrap();
        assert!(again.contains(&(inode(&v4), v4.local_addr().unwrap().port())));
        assert!(!again.iter().any(|(i, _)| *i == inode(&c) || *i == inode(&s)), "{again:?}");
    }
}
