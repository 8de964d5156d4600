//! Recording metadata: parsing and merging updates never panic, and a
//! DOCTYPE is never expanded.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut mid = text.len() / 2;
    while !text.is_char_boundary(mid) {
        mid -= 1;
    }
    let (a, b) = text.split_at(mid);
    let (Ok(mut m), Ok(u)) = (srs::siprec::metadata::parse(a), srs::siprec::metadata::parse(b)) else {
        let _ = srs::siprec::metadata::parse(&text);
        return;
    };
    let _ = m.apply(u);
    let _ = m.extension_values();
});
