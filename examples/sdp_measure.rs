//! Measures the SDP adapter on the vendor corpus: for every offer, whether
//! webrtc-sdp accepted it after normalisation (strict) or the raw reader
//! had to supply the fields. `cargo run --example sdp_measure`
fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".sip"))
        .collect();
    names.sort();
    let (mut strict, mut raw, mut unmodified_refused) = (0, 0, 0);
    for n in names {
        let text = std::fs::read_to_string(dir.join(&n)).unwrap();
        let req = srs::testkit::corpus_request(&text, "m");
        let Ok(msg) = srs::sip::message::parse(&req) else {
            println!("{n}: unparsable");
            continue;
        };
        let Ok((Some(sdp), _)) = srs::siprec::split_body(&msg) else {
            continue;
        };
        match srs::siprec::sdp::parse_offer(&sdp) {
            Ok(o) if o.strict_parse => strict += 1,
            Ok(_) => {
                raw += 1;
                let norm =
                    srs::siprec::sdp::normalise_for_webrtc_sdp(&String::from_utf8_lossy(&sdp));
                let e = webrtc_sdp::parse_sdp(&norm, false).err();
                println!(
                    "{n}: raw reader (webrtc-sdp after normalisation: {})",
                    e.map(|e| e.to_string())
                        .unwrap_or("accepted".into())
                        .lines()
                        .next()
                        .unwrap_or("")
                );
            }
            Err(e) => println!("{n}: rejected: {e}"),
        }
        if let Err(e) = webrtc_sdp::parse_sdp(&String::from_utf8_lossy(&sdp), false) {
            unmodified_refused += 1;
            println!(
                "{n}: webrtc-sdp alone refuses it: {}",
                e.to_string().lines().next().unwrap_or("")
            );
        }
    }
    println!("offers: {}; webrtc-sdp alone refuses {unmodified_refused}; after normalisation it accepts {strict}; the raw reader supplies {raw}", strict + raw);
}
