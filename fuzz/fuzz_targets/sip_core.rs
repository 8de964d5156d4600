//! The whole SIP core (transactions, dialogs, offers) on arbitrary input:
//! never a panic, and every offered session can be accepted.
#![no_main]
use libfuzzer_sys::fuzz_target;
use srs::sip::core::{CoreConfig, Event, Peer, SipCore, Transport};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let mut core = SipCore::new(CoreConfig::default());
    let t0 = Instant::now();
    let peer = Peer { transport: Transport::Udp, addr: "127.0.0.1:5070".parse().unwrap(), conn: None };
    for (i, part) in data.split(|b| *b == 0xff).enumerate() {
        let now = t0 + Duration::from_millis(i as u64 * 300);
        core.handle_input(now, peer, part);
        core.handle_timeout(now);
        while let Some(ev) = core.poll_event() {
            match ev {
                Event::Offered { session, offer, .. } => {
                    let answers = offer.sdp.media.iter().map(|_| srs::siprec::sdp::AnswerMedia { port: Some(30000), inactive: false, crypto: None }).collect();
                    core.accept(now, session, "127.0.0.1".parse().unwrap(), answers);
                }
                Event::Reoffered { session, sdp, .. } => {
                    let answers = sdp.media.iter().map(|_| srs::siprec::sdp::AnswerMedia { port: Some(30000), inactive: false, crypto: None }).collect();
                    core.accept(now, session, "127.0.0.1".parse().unwrap(), answers);
                }
                _ => {}
            }
        }
        while core.poll_transmit().is_some() {}
    }
});
