use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// RFC 3711 Appendix B.3 master key and salt (also libsrtp's test key).
fn b3_attr(suite: Suite) -> CryptoAttr {
    let mut a = CryptoAttr {
        tag: 1,
        suite,
        master_key: hex("E1F97A0D3E018BE0D64FA32C06DE4139").try_into().unwrap(),
        master_salt: hex("0EC675AD498AFEEBB6960B3AABE6").try_into().unwrap(),
        mki: None,
        unencrypted_srtcp: false,
    };
    if suite == Suite::AeadAes128Gcm {
        a.master_salt[12..].fill(0);
    }
    a
}

fn rtp(seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80, 0];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn sr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..20).map(|i| i as u8));
    p
}

#[test]
fn rfc3711_b2_aes_cm_keystream() {
    let key = hex("2B7E151628AED2A6ABF7158809CF4F3C");
    let cipher = Aes128::new_from_slice(&key).unwrap();
    // Session salt F0..FD; SSRC, ROC, SEQ zero: the counter starts at
    // F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000.
    let salt: [u8; 14] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap();
    assert_eq!(
        cm_iv(&salt, 0, 0).to_vec(),
        hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000")
    );
    let mut ks = vec![0u8; 0xff02 * 16];
    cm_apply(&cipher, &salt, 0, 0, &mut ks);
    let block = |i: usize| ks[i * 16..i * 16 + 16].to_vec();
    assert_eq!(block(0), hex("E03EAD0935C95E80E166B16DD92B4EB4"));
    assert_eq!(block(1), hex("D23513162B02D0F72A43A2FE4A5F97AB"));
    assert_eq!(block(2), hex("41E95B3BB0A2E8DD477901E4FCA894C0"));
    assert_eq!(block(0xfeff), hex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
    assert_eq!(block(0xff00), hex("362B7C3C6773516318A077D7FC5073AE"));
    assert_eq!(block(0xff01), hex("6A2CC3787889374FBEB4C81B17BA6C44"));
}

#[test]
fn rfc3711_b3_key_derivation() {
    let a = b3_attr(Suite::AesCm128HmacSha1_80);
    let master = Aes128::new(&a.master_key.into());
    // The IV of label 0 is the salt shifted by 16 bits.
    let mut k = [0u8; 16];
    derive(&master, &a.master_salt, LABEL_RTP_ENC, &mut k);
    assert_eq!(k.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
    let mut s = [0u8; 14];
    derive(&master, &a.master_salt, LABEL_RTP_SALT, &mut s);
    assert_eq!(s.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    // The RFC lists 94 bytes of PRF output for label 1; the HMAC-SHA1
    // key is the first 20.
    let mut auth = [0u8; 94];
    derive(&master, &a.master_salt, LABEL_RTP_AUTH, &mut auth);
    assert_eq!(
        auth.to_vec(),
        hex(
            "CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE
             E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25
             6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2"
        )
    );
    let Keys::CmSha1 { salt, .. } = Keys::new(&a, false) else {
        panic!()
    };
    assert_eq!(salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
}

/// libsrtp's srtp_driver known answer (AES_CM_128_HMAC_SHA1_80 with the
/// B.3 key): protect and unprotect.
#[test]
fn libsrtp_known_answer() {
    let plain = hex("800f1234decafbadcafebabe abababababababababababababababab");
    let protected =
        hex("800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb");
    let a = b3_attr(Suite::AesCm128HmacSha1_80);
    let mut out = Vec::new();
    SrtpSender::new(&a)
        .unwrap()
        .protect_rtp(&plain, &mut out)
        .unwrap();
    assert_eq!(out, protected);
    let mut buf = protected.clone();
    let n = SrtpReceiver::new(&a)
        .unwrap()
        .unprotect_rtp(&mut buf)
        .unwrap();
    assert_eq!(&buf[..n], &plain[..]);
}

#[test]
fn parses_the_offered_lines() {
    // RFC 4568's own example: lifetime 2^20, MKI 1 on 4 bytes.
    let m = parse_crypto(
        "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4",
    )
    .unwrap();
    assert_eq!(m.mki, Some(Mki { value: 1, len: 4 }));
    assert!(!m.unencrypted_srtcp);
    let a =
        parse_crypto("2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj")
            .unwrap();
    assert_eq!((a.tag, a.suite), (2, Suite::AesCm128HmacSha1_32));
    assert_eq!(&a.master_key, b"70xwPH5@/,L:S1wY");
    assert_eq!(&a.master_salt, b"\"~='EpgT%(i_Vc");
    // The choice skips a line with several keys and takes the second.
    let offered = [
        "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|1:4;inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2:4"
            .to_string(),
        "2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj".into(),
    ];
    assert_eq!(choose(&offered).unwrap(), a);
    // MKI alone, a long one, UNENCRYPTED_SRTCP.
    let l = parse_crypto(
        "3 AEAD_AES_128_GCM inline:MDEyMzQ1Njc4OWFiY2RlZlNBTFRTQUxUU0FMVA|4294967296:5 UNENCRYPTED_SRTCP",
    )
    .unwrap();
    assert_eq!(
        l.mki,
        Some(Mki {
            value: 1 << 32,
            len: 5
        })
    );
    assert!(l.unencrypted_srtcp);
    assert_eq!(parse_crypto(&l.to_line()).unwrap(), l, "to_line round trip");
    // Lifetime alone is fine, in both notations; so is WSH.
    for l in ["|2^31", "|1048576", ""] {
        let line = format!(
            "7 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz{l} WSH=64"
        );
        assert_eq!(parse_crypto(&line).unwrap().tag, 7);
    }
}

#[test]
fn parse_errors_name_the_problem_and_never_the_key() {
    const KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
    let cases = [
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|1:0"),
            "MKI length",
        ),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|256:1"),
            "does not fit",
        ),
        (format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|x:4"), "MKI"),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|1:4|2^20"),
            "malformed key parameters",
        ),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|1:4;inline:{KEY}|2:4"),
            "MKI",
        ),
        (
            "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1j!GwgKCkgewkyMjA7fQp9CnVubGVz".into(),
            "base64",
        ),
        (
            "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7".into(),
            "bytes",
        ),
        (format!("1 AEAD_AES_128_GCM inline:{KEY}"), "28"),
        (
            format!("1 AEAD_AES_128_GCM inline:{KEY}{KEY}{KEY}"),
            "too long",
        ),
        (
            format!("1 F8_128_HMAC_SHA1_80 inline:{KEY}"),
            "F8_128_HMAC_SHA1_80",
        ),
        (format!("1 AES_256_CM_HMAC_SHA1_80 inline:{KEY}"), "suite"),
        (format!("1 inline:{KEY}"), "suite"),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTP"),
            "UNENCRYPTED_SRTP",
        ),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} KDR=1"),
            "KDR",
        ),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^x"),
            "lifetime",
        ),
        (format!("x AES_CM_128_HMAC_SHA1_80 inline:{KEY}"), "tag"),
        ("1 AES_CM_128_HMAC_SHA1_80".into(), "key"),
    ];
    for (line, why) in cases {
        let e = parse_crypto(&line).expect_err(&line).to_string();
        assert!(e.contains(why), "{line}: {e}");
        assert!(!e.contains("WVNfX19z"), "{e}");
    }
    let all: Vec<String> = vec![
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^x"),
        format!("2 F8_128_HMAC_SHA1_80 inline:{KEY}"),
        format!("3 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|1:4;inline:{KEY}|2:4"),
    ];
    let e = choose(&all).unwrap_err();
    assert!(
        matches!(
            e,
            SrtpError::NoSupportedCrypto {
                unsupported: Some(Unsupported::Suite),
                ..
            }
        ),
        "the first unsupported thing: {e:?}"
    );
    let e = e.to_string();
    assert!(
        e.contains("lifetime") && e.contains("F8_128") && e.contains("MKI") && !e.contains(KEY),
        "{e}"
    );
    assert!(matches!(
        choose(&[]),
        Err(SrtpError::NoSupportedCrypto {
            unsupported: None,
            ..
        })
    ));
    assert_eq!(
        Unsupported::SessionParameter.reason_phrase(),
        "SRTP Session Parameter Not Supported"
    );
}

#[test]
fn debug_never_shows_keys() {
    let a = b3_attr(Suite::AesCm128HmacSha1_80);
    let rx = SrtpReceiver::new(&a).unwrap();
    let tx = SrtpSender::new(&a).unwrap();
    for s in [format!("{a:?}"), format!("{rx:?}"), format!("{tx:?}")] {
        assert!(
            !s.to_lowercase().contains("e1f9") && !s.contains("225"),
            "{s}"
        );
        assert!(!s.contains("14, 198"), "{s}");
    }
    assert!(format!("{a:?}").contains("redacted"));
}

#[test]
fn answer_echoes_tag_and_suite_with_a_fresh_key() {
    for suite in Suite::ALL {
        let offer = b3_attr(suite);
        let (line, ours) = answer_line(&offer);
        let parsed = parse_crypto(&line).unwrap();
        assert_eq!(parsed, ours);
        assert_eq!((ours.tag, ours.suite), (1, suite));
        assert_ne!(ours.master_key, offer.master_key);
        assert!(
            line.starts_with(&format!("1 {} inline:", suite.name())),
            "{line}"
        );
        let (_, again) = answer_line(&offer);
        assert_ne!(again.master_key, ours.master_key);
    }
    let (line, _) = answer_line(&b3_attr(Suite::AesCm128HmacSha1_80));
    assert_eq!(line.len(), "1 AES_CM_128_HMAC_SHA1_80 inline:".len() + 40);
}

fn pair(suite: Suite) -> (SrtpSender, SrtpReceiver) {
    let a = b3_attr(suite);
    (SrtpSender::new(&a).unwrap(), SrtpReceiver::new(&a).unwrap())
}

#[test]
fn roundtrip_tamper_and_replay_every_suite() {
    for suite in Suite::ALL {
        let (mut tx, mut rx) = pair(suite);
        let plain = rtp(100, 16000, 0xCA11, &[0x55; 160]);
        let mut out = Vec::new();
        tx.protect_rtp(&plain, &mut out).unwrap();
        assert_eq!(out.len(), plain.len() + suite.rtp_tag_len());
        assert_ne!(&out[12..172], &plain[12..]);
        // One bit flipped anywhere (header, payload, tag): refused, and
        // the window does not move.
        for at in [1, 12, 100, out.len() - 1] {
            let mut bad = out.clone();
            bad[at] ^= 0x10;
            let r = rx.unprotect_rtp(&mut bad);
            assert_eq!(
                r,
                Err(SrtpError::Auth { ssrc: 0xCA11 }),
                "{suite} byte {at}"
            );
        }
        let mut buf = out.clone();
        let n = rx.unprotect_rtp(&mut buf).unwrap();
        assert_eq!(&buf[..n], &plain[..]);
        let mut again = out.clone();
        assert_eq!(
            rx.unprotect_rtp(&mut again),
            Err(SrtpError::Replay {
                ssrc: 0xCA11,
                index: 100
            })
        );
        // Too short, not RTP.
        assert!(matches!(
            rx.unprotect_rtp(&mut out.clone()[..14]),
            Err(SrtpError::Malformed(_))
        ));
        assert!(rx.unprotect_rtp(&mut [0u8; 40]).is_err());

        // SRTCP
        let plain = sr(0xCA11);
        tx.protect_rtcp(&plain, &mut out).unwrap();
        assert_eq!(out.len(), plain.len() + suite.rtcp_overhead());
        let mut bad = out.clone();
        bad[10] ^= 1;
        assert_eq!(
            rx.unprotect_rtcp(&mut bad),
            Err(SrtpError::Auth { ssrc: 0xCA11 })
        );
        let mut buf = out.clone();
        let n = rx.unprotect_rtcp(&mut buf).unwrap();
        assert_eq!(&buf[..n], &plain[..]);
        assert_eq!(
            rx.unprotect_rtcp(&mut out.clone()),
            Err(SrtpError::Replay {
                ssrc: 0xCA11,
                index: 0
            })
        );
        tx.protect_rtcp(&plain, &mut out).unwrap();
        let n = rx.unprotect_rtcp(&mut out).unwrap();
        assert_eq!(&out[..n], &plain[..]);
    }
}

#[test]
fn sequence_rollover_reorder_and_window() {
    for suite in Suite::ALL {
        let (mut tx, mut rx) = pair(suite);
        let mut sent = Vec::new();
        let mut seq = 65500u16;
        for i in 0..200u32 {
            let plain = rtp(seq, i * 160, 7, &[i as u8; 20]);
            let mut out = Vec::new();
            tx.protect_rtp(&plain, &mut out).unwrap();
            sent.push((plain, out));
            seq = seq.wrapping_add(1);
        }
        // In order, but swap around the wrap (65535 ↔ 0) and skip some.
        let mut order: Vec<usize> = (0..200).filter(|i| i % 17 != 5).collect();
        order.swap(35, 36);
        for &i in &order {
            let mut buf = sent[i].1.clone();
            let n = rx
                .unprotect_rtp(&mut buf)
                .unwrap_or_else(|e| panic!("{suite} packet {i}: {e}"));
            assert_eq!(&buf[..n], &sent[i].0[..]);
        }
        let w = rx.rtp_windows.get(7).unwrap();
        assert_eq!(w.highest, 0x1_0000 + 199 - 36, "ROC 1");
        // A late one inside the window (skipped before) is accepted,
        // one beyond it is not, even if never received.
        let mut late = sent[192].1.clone();
        assert!(rx.unprotect_rtp(&mut late).is_ok());
        let mut old = sent[5].1.clone();
        assert!(matches!(
            rx.unprotect_rtp(&mut old),
            Err(SrtpError::Replay { .. })
        ));
    }
}

#[test]
fn a_jump_of_many_packets_keeps_the_roc() {
    // Loss of 30000 packets across the wrap: still within half the
    // sequence space, so the index estimate holds.
    let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_32);
    let mut out = Vec::new();
    for seq in (50000u32..=110000).step_by(30000) {
        let plain = rtp(seq as u16, 0, 9, &[1; 8]);
        tx.protect_rtp(&plain, &mut out).unwrap();
        let n = rx.unprotect_rtp(&mut out).unwrap();
        assert_eq!(&out[..n], &plain[..]);
    }
    assert_eq!(rx.rtp_windows.get(9).unwrap().highest, 110000);
}

#[test]
fn ssrcs_have_their_own_state() {
    let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
    let mut out = Vec::new();
    for ssrc in 0..(MAX_SSRCS as u32 + 3) {
        let plain = rtp(1, 0, ssrc, &[2; 8]);
        tx.protect_rtp(&plain, &mut out).unwrap();
        rx.unprotect_rtp(&mut out).unwrap();
    }
    assert_eq!(rx.rtp_windows.0.len(), MAX_SSRCS);
    // A forged packet from an unknown SSRC creates no state.
    let mut forged = rtp(1, 0, 0xdead, &[0; 18]);
    assert!(rx.unprotect_rtp(&mut forged).is_err());
    assert!(rx.rtp_windows.get(0xdead).is_none());
}

#[test]
fn csrcs_extension_and_padding_stay_authenticated() {
    let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
    // CC = 1, X, P: header 12 + 4 + 4 + 8; payload ends with 2 pad bytes.
    let mut plain = vec![0xB1, 8, 0, 1, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 4];
    plain.extend_from_slice(&[0xBE, 0xDE, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8]);
    plain.extend_from_slice(&[9, 9, 9, 0, 2]);
    assert_eq!(rtp_header_len(&plain), Ok(28));
    let mut out = Vec::new();
    tx.protect_rtp(&plain, &mut out).unwrap();
    assert_eq!(&out[..28], &plain[..28], "header in clear");
    let n = rx.unprotect_rtp(&mut out).unwrap();
    assert_eq!(&out[..n], &plain[..]);
    assert!(rtp_header_len(&plain[..20]).is_err());
}

/// SRTCP with the E flag clear (authenticated, not encrypted), built
/// from the session keys by hand.
#[test]
fn unencrypted_srtcp_is_authenticated() {
    for suite in Suite::ALL {
        let a = b3_attr(suite);
        let mut rx = SrtpReceiver::new(&a).unwrap();
        let plain = sr(0x99);
        let e_index = 5u32.to_be_bytes();
        let mut p = plain.clone();
        match Keys::new(&a, true) {
            Keys::CmSha1 { mac, .. } => {
                p.extend_from_slice(&e_index);
                let mut mac = mac.clone();
                mac.update(&p);
                p.extend_from_slice(&mac.finalize().into_bytes()[..10]);
            }
            Keys::Gcm { aead, salt } => {
                let mut aad = plain.clone();
                aad.extend_from_slice(&e_index);
                let iv = gcm_iv(&salt, 0x99, 5);
                let tag = aead
                    .encrypt_in_place_detached(&iv.into(), &aad, &mut [])
                    .unwrap();
                p.extend_from_slice(&tag);
                p.extend_from_slice(&e_index);
            }
        }
        let mut bad = p.clone();
        bad[9] ^= 4;
        assert_eq!(
            rx.unprotect_rtcp(&mut bad),
            Err(SrtpError::Auth { ssrc: 0x99 })
        );
        let n = rx.unprotect_rtcp(&mut p).unwrap();
        assert_eq!(&p[..n], &plain[..], "{suite}");
    }
}

// --- interop with webrtc-srtp (an independent implementation) --------

fn profile(suite: Suite) -> webrtc_srtp::protection_profile::ProtectionProfile {
    use webrtc_srtp::protection_profile::ProtectionProfile as P;
    match suite {
        Suite::AesCm128HmacSha1_80 => P::Aes128CmHmacSha1_80,
        Suite::AesCm128HmacSha1_32 => P::Aes128CmHmacSha1_32,
        Suite::AeadAes128Gcm => P::AeadAes128Gcm,
    }
}

fn webrtc_context(a: &CryptoAttr) -> webrtc_srtp::context::Context {
    webrtc_srtp::context::Context::new(
        &a.master_key,
        &a.master_salt[..a.suite.salt_len()],
        profile(a.suite),
        None,
        None,
    )
    .unwrap()
}

#[test]
fn interop_webrtc_srtp_protects_we_unprotect() {
    for suite in Suite::ALL {
        let (_, a) = answer_line(&b3_attr(suite));
        let mut theirs = webrtc_context(&a);
        let mut rx = SrtpReceiver::new(&a).unwrap();
        let mut seq = 65530u16;
        for i in 0..20u32 {
            let plain = rtp(seq, i * 160, 0x5151, &[(i * 7) as u8; 160]);
            let p = theirs.encrypt_rtp(&plain).unwrap();
            let mut buf = p.to_vec();
            let n = rx
                .unprotect_rtp(&mut buf)
                .unwrap_or_else(|e| panic!("{suite} seq {seq}: {e}"));
            assert_eq!(&buf[..n], &plain[..], "{suite} seq {seq}");
            seq = seq.wrapping_add(1);
        }
        for _ in 0..3 {
            let plain = sr(0x5151);
            let p = theirs.encrypt_rtcp(&plain).unwrap();
            let mut buf = p.to_vec();
            let n = rx
                .unprotect_rtcp(&mut buf)
                .unwrap_or_else(|e| panic!("{suite} rtcp: {e}"));
            assert_eq!(&buf[..n], &plain[..]);
        }
    }
}

#[test]
fn interop_we_protect_webrtc_srtp_unprotects() {
    for suite in Suite::ALL {
        let (_, a) = answer_line(&b3_attr(suite));
        let mut theirs = webrtc_context(&a);
        let mut tx = SrtpSender::new(&a).unwrap();
        let mut out = Vec::new();
        let mut seq = 65530u16;
        for i in 0..20u32 {
            let plain = rtp(seq, i * 160, 0x7272, &[(i * 3) as u8; 33]);
            tx.protect_rtp(&plain, &mut out).unwrap();
            let d = theirs
                .decrypt_rtp(&out)
                .unwrap_or_else(|e| panic!("{suite} seq {seq}: {e}"));
            assert_eq!(&d[..], &plain[..], "{suite} seq {seq}");
            seq = seq.wrapping_add(1);
        }
        for _ in 0..3 {
            let plain = sr(0x7272);
            tx.protect_rtcp(&plain, &mut out).unwrap();
            let d = theirs
                .decrypt_rtcp(&out)
                .unwrap_or_else(|e| panic!("{suite} rtcp: {e}"));
            assert_eq!(&d[..], &plain[..]);
        }
    }
}

/// Inserts `mki` into a protected packet where RFC 3711 (AES-CM: before
/// the tag) and RFC 7714 (AEAD: after the ciphertext and its tag) put it.
fn with_mki(suite: Suite, p: &[u8], mki: &[u8]) -> Vec<u8> {
    let tag = match suite {
        Suite::AeadAes128Gcm => 0,
        Suite::AesCm128HmacSha1_80 => 10,
        Suite::AesCm128HmacSha1_32 => 4,
    };
    let at = p.len() - tag;
    [&p[..at], mki, &p[at..]].concat()
}

fn with_rtcp_mki(suite: Suite, p: &[u8], mki: &[u8]) -> Vec<u8> {
    let tag = match suite {
        Suite::AeadAes128Gcm => 0,
        _ => RTCP_TAG_LEN,
    };
    let at = p.len() - tag;
    [&p[..at], mki, &p[at..]].concat()
}

#[test]
fn packets_with_an_mki_every_suite_both_ways_of_protecting() {
    for suite in Suite::ALL {
        let (_, mut a) = answer_line(&b3_attr(suite));
        a.mki = Some(Mki {
            value: 0x0102,
            len: 3,
        });
        let mki = [0u8, 1, 2];
        let mut rx = SrtpReceiver::new(&a).unwrap();
        let mut ours = SrtpSender::new(&a).unwrap();
        let mut theirs = webrtc_context(&a);
        let mut out = Vec::new();
        for i in 0..10u16 {
            let plain = rtp(i, u32::from(i) * 160, 0x3131, &[i as u8; 160]);
            let p = if i % 2 == 0 {
                ours.protect_rtp(&plain, &mut out).unwrap();
                out.clone()
            } else {
                theirs.encrypt_rtp(&plain).unwrap().to_vec()
            };
            let mut buf = with_mki(suite, &p, &mki);
            let n = rx
                .unprotect_rtp(&mut buf)
                .unwrap_or_else(|e| panic!("{suite} seq {i}: {e}"));
            assert_eq!(&buf[..n], &plain[..], "{suite} seq {i}");
        }
        // Another MKI, none, or a packet too short for one: dropped.
        let plain = rtp(50, 0, 0x3131, &[1; 160]);
        ours.protect_rtp(&plain, &mut out).unwrap();
        let mut other = with_mki(suite, &out, &[0, 1, 3]);
        assert_eq!(
            rx.unprotect_rtp(&mut other),
            Err(SrtpError::Auth { ssrc: 0x3131 })
        );
        assert!(
            rx.unprotect_rtp(&mut out.clone()).is_err(),
            "{suite}: no MKI"
        );
        assert!(rx.unprotect_rtp(&mut out.clone()[..14]).is_err());
        let mut good = with_mki(suite, &out, &mki);
        assert!(
            rx.unprotect_rtp(&mut good).is_ok(),
            "{suite}: not consumed by the failures"
        );
        // SRTCP: the MKI after E and the index.
        for k in 0..3 {
            // Each side counts its own SRTCP index: its own SSRC.
            let plain = sr(if k == 1 { 0x4141 } else { 0x3131 });
            let p = if k == 1 {
                theirs.encrypt_rtcp(&plain).unwrap().to_vec()
            } else {
                ours.protect_rtcp(&plain, &mut out).unwrap();
                out.clone()
            };
            let mut buf = with_rtcp_mki(suite, &p, &mki);
            let n = rx
                .unprotect_rtcp(&mut buf)
                .unwrap_or_else(|e| panic!("{suite} rtcp {k}: {e}"));
            assert_eq!(&buf[..n], &plain[..]);
        }
        ours.protect_rtcp(&sr(0x3131), &mut out).unwrap();
        let mut other = with_rtcp_mki(suite, &out, &[9, 9, 9]);
        assert!(rx.unprotect_rtcp(&mut other).is_err());
    }
}

#[test]
fn unencrypted_srtcp_is_echoed_in_the_answer() {
    let offer = parse_crypto(
        "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|7:1 UNENCRYPTED_SRTCP",
    )
    .unwrap();
    let (line, ours) = answer_line(&offer);
    assert!(line.ends_with(" UNENCRYPTED_SRTCP"), "{line}");
    assert!(!line.contains('|'), "our key has no MKI: {line}");
    assert_eq!((ours.mki, ours.unencrypted_srtcp), (None, true));
}
