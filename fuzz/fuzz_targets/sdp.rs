//! SDP offers and our answers to them never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(o) = srs::siprec::sdp::parse_offer(data) {
        let answers: Vec<_> = o.media.iter().map(|_| srs::siprec::sdp::AnswerMedia { port: Some(30000), inactive: false, crypto: None }).collect();
        let _ = srs::siprec::sdp::build_answer(&o, "127.0.0.1".parse().unwrap(), &answers, 1, 1);
        for m in &o.media {
            let _ = m.recordable_codecs();
            let _ = srs::media::srtp::choose(&m.crypto);
        }
    }
});
