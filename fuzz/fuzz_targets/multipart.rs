//! Multipart bodies never panic; the first line is the Content-Type.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (ct, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (String::from_utf8_lossy(&data[..i]).into_owned(), &data[i + 1..]),
        None => ("multipart/mixed;boundary=b".to_string(), data),
    };
    if let Ok(parts) = srs::siprec::multipart::split(&ct, body) {
        for p in parts {
            let _ = p.content_type();
        }
    }
});
