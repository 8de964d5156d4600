//! Graceful shutdown with active calls: SIGTERM ends every session with a
//! BYE, publishes every recording (status complete) and exits promptly.

mod common;

use common::*;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

#[test]
fn sigterm_with_active_calls_publishes_them_and_exits() {
    let mut srs = Server::start();
    let raw = std::fs::read_to_string(
        manifest_dir().join("tests/fixtures/corpus/sipp-generated-invite.sip"),
    )
    .unwrap();
    let mut clients = Vec::new();
    for i in 0..3 {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let req = srs::testkit::corpus_request(&raw, "x");
        let req = String::from_utf8(req)
            .unwrap()
            .replace(
                "Call-ID: 1-20223@127.0.0.1",
                &format!("Call-ID: shutdown-{i}"),
            )
            .replace("branch=z9hG4bK-20223-1-0", &format!("branch=z9hG4bK-sd{i}"));
        let ok = final_response(&sock, srs.sip, req.as_bytes());
        assert_eq!(status(&ok), 200);
        let ack = format!(
            "ACK sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKack{i}\r\nFrom: <sip:src@127.0.0.1:5070>;tag=20223SIPpTag001\r\nTo: {}\r\nCall-ID: shutdown-{i}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            sock.local_addr().unwrap(),
            ok.header("To").unwrap()
        );
        sock.send_to(ack.as_bytes(), srs.sip).unwrap();
        clients.push(sock);
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(srs.child.id() as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    // Each client gets a BYE from the server.
    for (i, sock) in clients.iter().enumerate() {
        let mut buf = [0u8; 65535];
        let (n, from) = sock.recv_from(&mut buf).expect("a BYE");
        let bye = srs::sip::message::parse(&buf[..n]).unwrap();
        assert_eq!(
            bye.method(),
            Some(&srs::sip::message::Method::Bye),
            "client {i}"
        );
        sock.send_to(ok_to(&bye).as_bytes(), from).unwrap();
    }
    let status = loop {
        if let Some(s) = srs.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "did not exit within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "clean exit: {status:?}\n{}", srs.log());
    let list = srs.list_json();
    assert_eq!(list.len(), 3, "every active recording published");
    assert!(list.iter().all(|r| r["status"] == "complete"));
    let incoming: Vec<_> = std::fs::read_dir(srs.recordings.join(".incoming"))
        .unwrap()
        .collect();
    assert!(incoming.is_empty());
}
