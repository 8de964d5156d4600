//! SRTP/SRTCP unprotect never panics on arbitrary packets.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for line in [
        "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
        "2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj",
    ] {
        let attr = srs::media::srtp::parse_crypto(line).unwrap();
        let mut rx = srs::media::srtp::SrtpReceiver::new(&attr).unwrap();
        let mut buf = data.to_vec();
        let _ = rx.unprotect_rtp(&mut buf);
        let mut buf = data.to_vec();
        let _ = rx.unprotect_rtcp(&mut buf);
    }
    let _ = srs::media::srtp::parse_crypto(&String::from_utf8_lossy(data));
});
