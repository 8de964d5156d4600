//! RTP, RTCP and the recorder's whole packet path never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use srs::media::codec::CodecKind;
use srs::media::recorder::{StreamRecorder, StreamSpec};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let _ = srs::media::rtp::parse_view(data);
    let _ = srs::media::rtp::sender_report(data);
    let dir = std::env::temp_dir().join(format!("srs-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let t0 = Instant::now();
    let spec = StreamSpec { codecs: vec![(0, CodecKind::Pcmu), (9, CodecKind::G722)], dtmf: Some((101, 8000)), cn: Some(13), srtp: None };
    let Ok(mut r) = StreamRecorder::create(&dir.join("f.wav"), spec, t0, None) else { return };
    for (i, p) in data.split(|b| *b == 0xfe).enumerate() {
        let _ = r.on_datagram(t0 + Duration::from_millis(i as u64 * 20), p);
    }
    let _ = r.finish(t0 + Duration::from_secs(1));
});
