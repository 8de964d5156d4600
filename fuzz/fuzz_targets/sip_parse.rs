//! SIP parsing and TCP framing never panic, whatever the bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = srs::sip::message::parse(data);
    let _ = srs::sip::message::parse_head(data);
    let mut f = srs::sip::message::StreamFramer::new();
    for chunk in data.chunks(7) {
        f.push(chunk);
        while let Ok(Some(m)) = f.next_message() {
            let _ = srs::sip::message::parse(&m);
        }
    }
});
