//! SRTP (RFC 3711) keyed by SDES (RFC 4568), as RFC 7866 §12.2 asks of a
//! SIPREC recording server: [`parse_crypto`] reads an offered `a=crypto`
//! value, [`choose`] picks the first one we support, [`answer_line`] makes
//! ours, and [`SrtpReceiver`] unprotects the SRC's SRTP and SRTCP in place.
//!
//! The transforms are written here over the RustCrypto primitives (`aes`,
//! `ctr`, `hmac`, `sha1`, `aes-gcm`) rather than through `webrtc-srtp`,
//! whose `decrypt_rtp` returns a freshly allocated `Bytes` per packet: the
//! packet path allocates nothing in steady state (the per-SSRC state is
//! created once per SSRC, after its first authenticated packet). The tests
//! check RFC 3711 Appendix B and round-trip against `webrtc-srtp` both
//! ways.
//!
//! Suites: AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32 (RFC 4568
//! §6.2; the SRTCP tag is 80 bits for both) and AEAD_AES_128_GCM (RFC 7714;
//! 16-byte key, 12-byte salt, 16-byte tag). Key derivation rate 0. One
//! master key per line, with or without an MKI (RFC 4568 `|MKI:LEN`: the
//! packets carry it, checked and removed before authentication); SRTCP
//! with or without encryption (`UNENCRYPTED_SRTCP`: the E flag says).
//!
//! Keys are secrets: no `Debug` impl and no error message here shows key
//! material (nor the `a=crypto` line, which holds it).

use std::fmt;

use aes::cipher::{InnerIvInit, KeyInit, StreamCipher};
use aes::Aes128;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::Aes128Gcm;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

type Aes128Ctr = ctr::Ctr128BE<Aes128>;

/// AES-CTR over an already expanded key (no key schedule per packet).
fn ctr_from(cipher: &Aes128, iv: &[u8; 16]) -> Aes128Ctr {
    let core =
        ctr::CtrCore::<Aes128, ctr::flavors::Ctr128BE>::inner_iv_init(cipher.clone(), iv.into());
    Aes128Ctr::from_core(core)
}
type HmacSha1 = Hmac<Sha1>;

/// Base64 of RFC 4568 (RFC 3548, standard alphabet); padding optional on
/// input, written on output.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Replay window, packets (RFC 3711 §3.3.2 asks at least 64).
pub const REPLAY_WINDOW: u64 = 64;
/// SSRCs tracked per receiver or sender; the oldest is forgotten beyond.
const MAX_SSRCS: usize = 16;
/// SRTCP authentication tag of the AES-CM suites (80 bits for both).
const RTCP_TAG_LEN: usize = 10;
const GCM_TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SrtpError {
    /// A malformed `a=crypto` value; never quotes the key.
    #[error("a=crypto: {0}")]
    Parse(String),
    /// A well-formed `a=crypto` value using something we do not support
    /// (a suite, several master keys, a session parameter); the detail
    /// never quotes key material.
    #[error("a=crypto: unsupported {1}")]
    Unsupported(Unsupported, String),
    /// No offered `a=crypto` line is usable; the reasons, one per line,
    /// and what the first unsupported one used, if any was well-formed.
    #[error("no supported a=crypto line ({why})")]
    NoSupportedCrypto {
        why: String,
        unsupported: Option<Unsupported>,
    },
    #[error("not an SRTP/SRTCP packet: {0}")]
    Malformed(&'static str),
    #[error("SRTP authentication failed (ssrc {ssrc:#010x})")]
    Auth { ssrc: u32 },
    /// Already received, or older than the replay window.
    #[error("SRTP replayed or too old packet (ssrc {ssrc:#010x}, index {index})")]
    Replay { ssrc: u32, index: u64 },
}

/// What a well-formed `a=crypto` line uses that we do not support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    Suite,
    /// A key method other than `inline:`.
    KeyMethod,
    /// Several master keys in one line (`;`).
    SeveralKeys,
    /// A session parameter (KDR, UNENCRYPTED_SRTP, FEC_ORDER, ...).
    SessionParameter,
}

impl Unsupported {
    /// The SIP reason phrase refusing an offer for it (488).
    pub fn reason_phrase(self) -> &'static str {
        match self {
            Unsupported::Suite => "SRTP Crypto Suite Not Supported",
            Unsupported::KeyMethod => "SRTP Key Method Not Supported",
            Unsupported::SeveralKeys => "Several SRTP Master Keys Not Supported",
            Unsupported::SessionParameter => "SRTP Session Parameter Not Supported",
        }
    }
}

/// A master key identifier (RFC 3711 §3.1, RFC 4568 §6.1 `|MKI:LEN`):
/// `len` bytes carried by every packet, big-endian `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mki {
    pub value: u64,
    /// 1..=128 bytes.
    pub len: u8,
}

impl Mki {
    /// Does `bytes` (`len` of them) carry this MKI?
    fn matches(&self, bytes: &[u8]) -> bool {
        let n = bytes.len();
        let tail = n.min(8);
        bytes[..n - tail].iter().all(|b| *b == 0)
            && bytes[n - tail..]
                .iter()
                .fold(0u64, |v, b| (v << 8) | u64::from(*b))
                == self.value
    }
}

/// A crypto suite we support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
    /// RFC 7714 §14.2.
    AeadAes128Gcm,
}

impl Suite {
    pub const ALL: [Suite; 3] = [
        Suite::AesCm128HmacSha1_80,
        Suite::AesCm128HmacSha1_32,
        Suite::AeadAes128Gcm,
    ];

    /// The SDES name.
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Master salt length, bytes.
    pub fn salt_len(self) -> usize {
        match self {
            Suite::AeadAes128Gcm => 12,
            _ => 14,
        }
    }

    /// Authentication tag of an SRTP packet, bytes.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
            Suite::AeadAes128Gcm => GCM_TAG_LEN,
        }
    }

    /// Bytes an SRTCP packet carries beyond the RTCP one (E flag and index,
    /// and the tag).
    pub fn rtcp_overhead(self) -> usize {
        4 + match self {
            Suite::AeadAes128Gcm => GCM_TAG_LEN,
            _ => RTCP_TAG_LEN,
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One parsed `a=crypto` value (RFC 4568 §9.1): tag, suite, the inline
/// master key and salt, its MKI if any, and `UNENCRYPTED_SRTCP`. A
/// lifetime and `WSH` are accepted and ignored; several keys and other
/// session parameters are refused.
#[derive(Clone, PartialEq, Eq)]
pub struct CryptoAttr {
    pub tag: u32,
    pub suite: Suite,
    pub master_key: [u8; 16],
    /// For AEAD_AES_128_GCM the salt is 12 bytes: the last two are zero
    /// (which is also how RFC 7714 §11 pads it for key derivation).
    pub master_salt: [u8; 14],
    /// The packets carry this master key identifier.
    pub mki: Option<Mki>,
    /// The sender's SRTCP is authenticated, not encrypted (declared in
    /// the offer, so echoed in our answer).
    pub unencrypted_srtcp: bool,
}

impl fmt::Debug for CryptoAttr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptoAttr")
            .field("tag", &self.tag)
            .field("suite", &self.suite)
            .field("master_key", &"<redacted>")
            .field("master_salt", &"<redacted>")
            .field("mki", &self.mki)
            .field("unencrypted_srtcp", &self.unencrypted_srtcp)
            .finish()
    }
}

impl CryptoAttr {
    /// `a=crypto` value for this key: "TAG SUITE inline:KEY||SALT", with
    /// "|MKI:LEN" and " UNENCRYPTED_SRTCP" when set.
    pub fn to_line(&self) -> String {
        let mut ks = [0u8; 30];
        let n = 16 + self.suite.salt_len();
        ks[..16].copy_from_slice(&self.master_key);
        ks[16..n].copy_from_slice(&self.master_salt[..n - 16]);
        let mut line = format!(
            "{} {} inline:{}",
            self.tag,
            self.suite.name(),
            B64.encode(&ks[..n])
        );
        ks.fill(0);
        if let Some(m) = self.mki {
            line.push_str(&format!("|{}:{}", m.value, m.len));
        }
        if self.unencrypted_srtcp {
            line.push_str(" UNENCRYPTED_SRTCP");
        }
        line
    }
}

/// A token we may quote in an error: a short name, never key material.
fn quotable(s: &str) -> String {
    if !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        format!("\"{s}\"")
    } else {
        "(not shown)".into()
    }
}

/// Parses one `a=crypto` value (without "a=crypto:").
pub fn parse_crypto(value: &str) -> Result<CryptoAttr, SrtpError> {
    let mut fields = value.split_ascii_whitespace();
    let tag = fields
        .next()
        .filter(|t| (1..=9).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<u32>().ok())
        .ok_or_else(|| SrtpError::Parse("missing or invalid tag".into()))?;
    let suite_name = fields
        .next()
        .ok_or_else(|| SrtpError::Parse("missing crypto suite".into()))?;
    let suite = Suite::from_name(suite_name).ok_or_else(|| {
        SrtpError::Unsupported(
            Unsupported::Suite,
            format!("crypto suite {}", quotable(suite_name)),
        )
    })?;
    let key_params = fields
        .next()
        .ok_or_else(|| SrtpError::Parse("missing key parameters".into()))?;
    if key_params.contains(';') {
        return Err(SrtpError::Unsupported(
            Unsupported::SeveralKeys,
            "several master keys (MKI) in one line".into(),
        ));
    }
    let inline = key_params.strip_prefix("inline:").ok_or_else(|| {
        SrtpError::Unsupported(Unsupported::KeyMethod, "key method (only inline:)".into())
    })?;
    // inline:KEY||SALT ["|" lifetime] ["|" MKI ":" length], in that order.
    let mut parts = inline.split('|');
    let b64 = parts.next().unwrap_or("");
    let mut lifetime_seen = false;
    let mut mki = None;
    for p in parts {
        if mki.is_some() {
            return Err(SrtpError::Parse("malformed key parameters".into()));
        }
        if let Some((value, len)) = p.split_once(':') {
            mki = Some(parse_mki(value, len)?);
            continue;
        }
        if lifetime_seen {
            return Err(SrtpError::Parse("malformed key parameters".into()));
        }
        lifetime_seen = true;
        valid_lifetime(p)?;
    }
    let mut unencrypted_srtcp = false;
    for param in fields {
        let name = param.split('=').next().unwrap_or("");
        match name {
            // Window size hint: ours is 64, the minimum the hint allows.
            "WSH" => {}
            // The receiver follows each SRTCP packet's E flag.
            "UNENCRYPTED_SRTCP" => unencrypted_srtcp = true,
            _ => {
                return Err(SrtpError::Unsupported(
                    Unsupported::SessionParameter,
                    format!("session parameter {}", quotable(name)),
                ))
            }
        }
    }
    if b64.len() > 84 {
        return Err(SrtpError::Parse("inline key||salt is too long".into()));
    }
    let mut ks = [0u8; 64];
    let n = B64
        .decode_slice(b64, &mut ks)
        .map_err(|_| SrtpError::Parse("inline key is not valid base64".into()));
    let want = 16 + suite.salt_len();
    let result = match n {
        Ok(n) if n == want => {
            let mut master_key = [0u8; 16];
            let mut master_salt = [0u8; 14];
            master_key.copy_from_slice(&ks[..16]);
            master_salt[..want - 16].copy_from_slice(&ks[16..want]);
            Ok(CryptoAttr {
                tag,
                suite,
                master_key,
                master_salt,
                mki,
                unencrypted_srtcp,
            })
        }
        Ok(n) => Err(SrtpError::Parse(format!(
            "inline key||salt is {n} bytes, {suite} needs {want}"
        ))),
        Err(e) => Err(e),
    };
    ks.fill(0);
    result
}

/// `MKI:LEN` of RFC 4568 §6.1: a decimal value, and its length in bytes
/// (1 to 128) on the wire, which must hold the value.
fn parse_mki(value: &str, len: &str) -> Result<Mki, SrtpError> {
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(value) || !digits(len) {
        return Err(SrtpError::Parse("malformed MKI".into()));
    }
    let value: u64 = value
        .parse()
        .map_err(|_| SrtpError::Parse("MKI value too large".into()))?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| (1..=128).contains(l))
        .ok_or_else(|| SrtpError::Parse("MKI length must be 1 to 128 bytes".into()))?;
    if len < 8 && value >> (8 * u32::from(len)) != 0 {
        return Err(SrtpError::Parse("MKI value does not fit its length".into()));
    }
    Ok(Mki { value, len })
}

/// A key lifetime: decimal or "2^N" (RFC 4568 §6.1).
fn valid_lifetime(s: &str) -> Result<(), SrtpError> {
    let digits = s.strip_prefix("2^").unwrap_or(s);
    if !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(SrtpError::Parse("malformed key lifetime".into()))
    }
}

/// Picks the first offered `a=crypto` value we support.
pub fn choose(offered: &[String]) -> Result<CryptoAttr, SrtpError> {
    let mut why = Vec::new();
    let mut unsupported = None;
    for line in offered {
        match parse_crypto(line) {
            Ok(a) => return Ok(a),
            Err(e) => {
                if let SrtpError::Unsupported(u, _) = &e {
                    unsupported = unsupported.or(Some(*u));
                }
                why.push(e.to_string());
            }
        }
    }
    if why.is_empty() {
        why.push("none offered".into());
    }
    Err(SrtpError::NoSupportedCrypto {
        why: why.join("; "),
        unsupported,
    })
}

/// Our answer to a chosen offer: same tag and suite, a fresh random key.
/// Returns the `a=crypto` value and our key (for a sender; the recorder
/// only receives, with the offer's key).
pub fn answer_line(offer: &CryptoAttr) -> (String, CryptoAttr) {
    use rand::RngCore;
    // Our own key needs no MKI; UNENCRYPTED_SRTCP is declared for the
    // session, so it is echoed.
    let mut ours = CryptoAttr {
        tag: offer.tag,
        suite: offer.suite,
        master_key: [0; 16],
        master_salt: [0; 14],
        mki: None,
        unencrypted_srtcp: offer.unencrypted_srtcp,
    };
    let mut rng = rand::rng();
    rng.fill_bytes(&mut ours.master_key);
    let n = offer.suite.salt_len();
    rng.fill_bytes(&mut ours.master_salt[..n]);
    (ours.to_line(), ours)
}

// --- key derivation (RFC 3711 §4.3, kdr = 0) -----------------------------

const LABEL_RTP_ENC: u8 = 0;
const LABEL_RTP_AUTH: u8 = 1;
const LABEL_RTP_SALT: u8 = 2;
const LABEL_RTCP_ENC: u8 = 3;
const LABEL_RTCP_AUTH: u8 = 4;
const LABEL_RTCP_SALT: u8 = 5;

/// AES-CM PRF output for `label`: keystream with IV = (salt XOR label·2^48)·2^16.
fn derive(master: &Aes128, master_salt: &[u8; 14], label: u8, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(master_salt);
    iv[7] ^= label;
    out.fill(0);
    ctr_from(master, &iv).apply_keystream(out);
}

/// Session keys of one direction and one of SRTP/SRTCP. Held inline (a
/// few hundred bytes per context): no pointer to chase per packet.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)]
enum Keys {
    CmSha1 {
        cipher: Aes128,
        salt: [u8; 14],
        mac: HmacSha1,
    },
    Gcm {
        aead: Aes128Gcm,
        salt: [u8; 12],
    },
}

impl Keys {
    fn new(attr: &CryptoAttr, rtcp: bool) -> Keys {
        let master = Aes128::new(&attr.master_key.into());
        let off = if rtcp { 3 } else { 0 };
        let mut k = [0u8; 16];
        derive(&master, &attr.master_salt, LABEL_RTP_ENC + off, &mut k);
        let keys = match attr.suite {
            Suite::AesCm128HmacSha1_80 | Suite::AesCm128HmacSha1_32 => {
                let mut salt = [0u8; 14];
                derive(&master, &attr.master_salt, LABEL_RTP_SALT + off, &mut salt);
                let mut a = [0u8; 20];
                derive(&master, &attr.master_salt, LABEL_RTP_AUTH + off, &mut a);
                let mac = <HmacSha1 as Mac>::new_from_slice(&a).expect("HMAC takes any key");
                a.fill(0);
                Keys::CmSha1 {
                    cipher: Aes128::new(&k.into()),
                    salt,
                    mac,
                }
            }
            Suite::AeadAes128Gcm => {
                let mut salt = [0u8; 12];
                derive(&master, &attr.master_salt, LABEL_RTP_SALT + off, &mut salt);
                Keys::Gcm {
                    aead: Aes128Gcm::new(&k.into()),
                    salt,
                }
            }
        };
        k.fill(0);
        keys
    }
}

// These are the labels' names in RFC 3711; `Keys::new` adds 3 for SRTCP.
const _: () = assert!(LABEL_RTCP_ENC == LABEL_RTP_ENC + 3);
const _: () = assert!(LABEL_RTCP_AUTH == LABEL_RTP_AUTH + 3);
const _: () = assert!(LABEL_RTCP_SALT == LABEL_RTP_SALT + 3);

/// AES-CM IV (RFC 3711 §4.1.1): (salt·2^16) XOR (SSRC·2^64) XOR (index·2^16).
fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *b ^= s;
    }
    iv
}

/// GCM IV (RFC 7714 §8.1, §9.1): 00 00 SSRC(4) HI(4) LO(2) XOR salt, where
/// HI:LO is ROC:SEQ for SRTP and 0000:0:index(31) for SRTCP (as 48 bits).
fn gcm_iv(salt: &[u8; 12], ssrc: u32, index: u64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[6..12].copy_from_slice(&index.to_be_bytes()[2..]);
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    iv
}

fn cm_apply(cipher: &Aes128, salt: &[u8; 14], ssrc: u32, index: u64, data: &mut [u8]) {
    let iv = cm_iv(salt, ssrc, index);
    ctr_from(cipher, &iv).apply_keystream(data);
}

/// Length of an RTP header with its CSRCs and extension.
fn rtp_header_len(p: &[u8]) -> Result<usize, SrtpError> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return Err(SrtpError::Malformed("no RTP version 2 header"));
    }
    let mut n = 12 + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        if p.len() < n + 4 {
            return Err(SrtpError::Malformed("truncated header extension"));
        }
        n += 4 + 4 * usize::from(u16::from_be_bytes([p[n + 2], p[n + 3]]));
    }
    if n > p.len() {
        return Err(SrtpError::Malformed("truncated RTP header"));
    }
    Ok(n)
}

fn ssrc_at(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

// --- per-SSRC state: index estimation and replay window -------------------

/// One SSRC's highest index received (ROC·2^16 + SEQ for SRTP, the SRTCP
/// index for SRTCP) and the replay bitmap below it (bit i: highest − i).
#[derive(Debug, Clone, Copy)]
struct Window {
    ssrc: u32,
    highest: u64,
    bits: u64,
}

impl Window {
    fn new(ssrc: u32, index: u64) -> Window {
        Window {
            ssrc,
            highest: index,
            bits: 0,
        }
    }

    /// RFC 3711 §3.3.1: the index of `seq` given the highest seen. `None`
    /// for a packet from before ROC 0.
    fn estimate(&self, seq: u16) -> Option<u64> {
        let roc = self.highest >> 16;
        let s_l = self.highest as u16;
        let v = if s_l < 0x8000 {
            if seq > s_l && seq - s_l > 0x8000 {
                roc.checked_sub(1)?
            } else {
                roc
            }
        } else if s_l - 0x8000 > seq {
            roc + 1
        } else {
            roc
        };
        Some((v << 16) | u64::from(seq))
    }

    fn seen(&self, index: u64) -> bool {
        index <= self.highest
            && (self.highest - index >= REPLAY_WINDOW
                || (self.bits >> (self.highest - index)) & 1 == 1)
    }

    fn accept(&mut self, index: u64) {
        if index > self.highest {
            let d = index - self.highest;
            self.bits = if d >= 64 { 0 } else { self.bits << d };
            self.highest = index;
            self.bits |= 1;
        } else {
            self.bits |= 1 << (self.highest - index);
        }
    }
}

/// Windows by SSRC; a new SSRC is added only once authenticated.
#[derive(Debug, Default)]
struct Windows(Vec<Window>);

impl Windows {
    fn get(&self, ssrc: u32) -> Option<&Window> {
        self.0.iter().find(|w| w.ssrc == ssrc)
    }

    fn accept(&mut self, ssrc: u32, index: u64) {
        match self.0.iter_mut().find(|w| w.ssrc == ssrc) {
            Some(w) => w.accept(index),
            None => {
                if self.0.len() >= MAX_SSRCS {
                    self.0.remove(0);
                }
                let mut w = Window::new(ssrc, index);
                w.accept(index);
                self.0.push(w);
            }
        }
    }
}

// --- receiver --------------------------------------------------------------

/// Receive-side context (the SRC's key) for one stream: unprotects SRTP and
/// SRTCP in place. Keeps a replay window and the rollover counter per SSRC.
pub struct SrtpReceiver {
    suite: Suite,
    mki: Option<Mki>,
    rtp: Keys,
    rtcp: Keys,
    rtp_windows: Windows,
    rtcp_windows: Windows,
}

impl fmt::Debug for SrtpReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpReceiver")
            .field("suite", &self.suite)
            .field("rtp_ssrcs", &self.rtp_windows.0.len())
            .field("rtcp_ssrcs", &self.rtcp_windows.0.len())
            .finish_non_exhaustive()
    }
}

impl SrtpReceiver {
    pub fn new(attr: &CryptoAttr) -> Result<Self, SrtpError> {
        Ok(SrtpReceiver {
            suite: attr.suite,
            mki: attr.mki,
            rtp: Keys::new(attr, false),
            rtcp: Keys::new(attr, true),
            rtp_windows: Windows(Vec::with_capacity(2)),
            rtcp_windows: Windows(Vec::with_capacity(2)),
        })
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Authenticates and decrypts one SRTP packet in place; returns the
    /// length of the plain RTP packet (`packet[..n]`). Replayed packets and
    /// ones older than the window are refused; the rollover counter follows
    /// the sequence number (RFC 3711 §3.3.1). On error the packet may have
    /// been changed and must be dropped.
    pub fn unprotect_rtp(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        let hlen = rtp_header_len(packet)?;
        let tag_len = self.suite.rtp_tag_len();
        let packet = match &self.mki {
            Some(mki) => {
                let n = strip_mki(mki, self.suite, packet, hlen, tag_len, ssrc_at(packet, 8))?;
                &mut packet[..n]
            }
            None => packet,
        };
        if packet.len() < hlen + tag_len {
            return Err(SrtpError::Malformed("shorter than header and tag"));
        }
        let ssrc = ssrc_at(packet, 8);
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let index = match self.rtp_windows.get(ssrc) {
            Some(w) => {
                let index = w
                    .estimate(seq)
                    .ok_or(SrtpError::Replay { ssrc, index: 0 })?;
                if w.seen(index) {
                    return Err(SrtpError::Replay { ssrc, index });
                }
                index
            }
            None => u64::from(seq),
        };
        let end = packet.len() - tag_len;
        match &self.rtp {
            Keys::CmSha1 { cipher, salt, mac } => {
                let mut mac = mac.clone();
                mac.update(&packet[..end]);
                mac.update(&((index >> 16) as u32).to_be_bytes());
                mac.verify_truncated_left(&packet[end..])
                    .map_err(|_| SrtpError::Auth { ssrc })?;
                cm_apply(cipher, salt, ssrc, index, &mut packet[hlen..end]);
            }
            Keys::Gcm { aead, salt } => {
                let iv = gcm_iv(salt, ssrc, index);
                let (head, rest) = packet.split_at_mut(hlen);
                let (body, tag) = rest.split_at_mut(end - hlen);
                aead.decrypt_in_place_detached(
                    &iv.into(),
                    head,
                    body,
                    aes_gcm::Tag::from_slice(tag),
                )
                .map_err(|_| SrtpError::Auth { ssrc })?;
            }
        }
        self.rtp_windows.accept(ssrc, index);
        Ok(end)
    }

    /// Authenticates and decrypts one SRTCP packet (compound or not) in
    /// place; returns the length of the plain RTCP packet.
    pub fn unprotect_rtcp(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        let over = self.suite.rtcp_overhead();
        if packet.len() < 8 + over || packet[0] >> 6 != 2 {
            return Err(SrtpError::Malformed("no SRTCP header and trailer"));
        }
        let packet = match &self.mki {
            Some(mki) => {
                // The MKI follows E and the index (RFC 3711 §3.4).
                let tag = match self.suite {
                    Suite::AeadAes128Gcm => 0,
                    _ => RTCP_TAG_LEN,
                };
                let n = strip_mki(
                    mki,
                    self.suite,
                    packet,
                    8 + over - tag,
                    tag,
                    ssrc_at(packet, 4),
                )?;
                &mut packet[..n]
            }
            None => packet,
        };
        let ssrc = ssrc_at(packet, 4);
        let len = packet.len();
        let (e_at, plain_end) = match self.suite {
            Suite::AeadAes128Gcm => (len - 4, len - over),
            _ => (len - over, len - over),
        };
        let e_index = ssrc_at(packet, e_at);
        let encrypted = e_index >> 31 == 1;
        let index = u64::from(e_index & 0x7fff_ffff);
        if self.rtcp_windows.get(ssrc).is_some_and(|w| w.seen(index)) {
            return Err(SrtpError::Replay { ssrc, index });
        }
        match &self.rtcp {
            Keys::CmSha1 { cipher, salt, mac } => {
                let mut mac = mac.clone();
                mac.update(&packet[..len - RTCP_TAG_LEN]);
                mac.verify_truncated_left(&packet[len - RTCP_TAG_LEN..])
                    .map_err(|_| SrtpError::Auth { ssrc })?;
                if encrypted {
                    cm_apply(cipher, salt, ssrc, index, &mut packet[8..plain_end]);
                }
            }
            Keys::Gcm { aead, salt } => {
                let iv = gcm_iv(salt, ssrc, index).into();
                let mut tag = [0u8; GCM_TAG_LEN];
                tag.copy_from_slice(&packet[plain_end..plain_end + GCM_TAG_LEN]);
                let tag = aes_gcm::Tag::from(tag);
                let r = if encrypted {
                    // AAD: the first 8 octets, then E flag and index.
                    let mut aad = [0u8; 12];
                    aad[..8].copy_from_slice(&packet[..8]);
                    aad[8..].copy_from_slice(&packet[e_at..]);
                    aead.decrypt_in_place_detached(&iv, &aad, &mut packet[8..plain_end], &tag)
                } else {
                    // Authentication only: the AAD is the whole packet with
                    // E and index after it (moved over the saved tag).
                    packet.copy_within(e_at.., plain_end);
                    aead.decrypt_in_place_detached(&iv, &packet[..plain_end + 4], &mut [], &tag)
                };
                r.map_err(|_| SrtpError::Auth { ssrc })?;
            }
        }
        self.rtcp_windows.accept(ssrc, index);
        Ok(plain_end)
    }
}

/// Checks and removes the MKI of a received packet in place (no copy but
/// the tag's few bytes); returns the length of the packet without it. The
/// MKI is not authenticated (RFC 3711 §3.1): it sits before the HMAC tag
/// (AES-CM), or after the AEAD ciphertext and its tag (RFC 7714 §8, §9,
/// with no other tag). `before` is what must precede it (header, SRTCP
/// E and index). Another MKI than ours: not our key, dropped as such.
fn strip_mki(
    mki: &Mki,
    suite: Suite,
    packet: &mut [u8],
    before: usize,
    tag_len: usize,
    ssrc: u32,
) -> Result<usize, SrtpError> {
    let m = usize::from(mki.len);
    let len = packet.len();
    let tag_len = match suite {
        Suite::AeadAes128Gcm => 0,
        _ => tag_len,
    };
    if len < before + m + tag_len {
        return Err(SrtpError::Malformed("shorter than its MKI and tag"));
    }
    let at = len - tag_len - m;
    if !mki.matches(&packet[at..at + m]) {
        return Err(SrtpError::Auth { ssrc });
    }
    packet.copy_within(len - tag_len.., at);
    Ok(len - m)
}

// --- sender ----------------------------------------------------------------

/// The sending side, for tests and load generators.
pub struct SrtpSender {
    suite: Suite,
    rtp: Keys,
    rtcp: Keys,
    rtp_windows: Windows,
    /// Next SRTCP index per SSRC (in `highest`).
    rtcp_windows: Windows,
}

impl fmt::Debug for SrtpSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpSender")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl SrtpSender {
    pub fn new(attr: &CryptoAttr) -> Result<Self, SrtpError> {
        Ok(SrtpSender {
            suite: attr.suite,
            rtp: Keys::new(attr, false),
            rtcp: Keys::new(attr, true),
            rtp_windows: Windows::default(),
            rtcp_windows: Windows::default(),
        })
    }

    /// Protects one RTP packet into `out` (cleared first; no allocation
    /// once `out` has the capacity). The rollover counter follows the
    /// sequence numbers.
    pub fn protect_rtp(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        let hlen = rtp_header_len(plain)?;
        let ssrc = ssrc_at(plain, 8);
        let seq = u16::from_be_bytes([plain[2], plain[3]]);
        let index = match self.rtp_windows.get(ssrc) {
            Some(w) => w
                .estimate(seq)
                .ok_or(SrtpError::Malformed("sequence number before ROC 0"))?,
            None => u64::from(seq),
        };
        out.clear();
        out.extend_from_slice(plain);
        match &self.rtp {
            Keys::CmSha1 { cipher, salt, mac } => {
                cm_apply(cipher, salt, ssrc, index, &mut out[hlen..]);
                let mut mac = mac.clone();
                mac.update(out);
                mac.update(&((index >> 16) as u32).to_be_bytes());
                let tag = mac.finalize().into_bytes();
                out.extend_from_slice(&tag[..self.suite.rtp_tag_len()]);
            }
            Keys::Gcm { aead, salt } => {
                let iv = gcm_iv(salt, ssrc, index);
                let (head, body) = out.split_at_mut(hlen);
                let tag = aead
                    .encrypt_in_place_detached(&iv.into(), head, body)
                    .map_err(|_| SrtpError::Malformed("packet too long for GCM"))?;
                out.extend_from_slice(&tag);
            }
        }
        self.rtp_windows.accept(ssrc, index);
        Ok(())
    }

    /// Protects one (compound) RTCP packet into `out`, encrypted, with the
    /// next SRTCP index of its sender SSRC (starting at 0).
    pub fn protect_rtcp(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        if plain.len() < 8 || plain[0] >> 6 != 2 {
            return Err(SrtpError::Malformed("no RTCP header"));
        }
        let ssrc = ssrc_at(plain, 4);
        let index = self
            .rtcp_windows
            .get(ssrc)
            .map_or(0, |w| (w.highest + 1) & 0x7fff_ffff);
        let e_index = (0x8000_0000 | index as u32).to_be_bytes();
        out.clear();
        out.extend_from_slice(plain);
        match &self.rtcp {
            Keys::CmSha1 { cipher, salt, mac } => {
                cm_apply(cipher, salt, ssrc, index, &mut out[8..]);
                out.extend_from_slice(&e_index);
                let mut mac = mac.clone();
                mac.update(out);
                let tag = mac.finalize().into_bytes();
                out.extend_from_slice(&tag[..RTCP_TAG_LEN]);
            }
            Keys::Gcm { aead, salt } => {
                let iv = gcm_iv(salt, ssrc, index);
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&plain[..8]);
                aad[8..].copy_from_slice(&e_index);
                let tag = aead
                    .encrypt_in_place_detached(&iv.into(), &aad, &mut out[8..])
                    .map_err(|_| SrtpError::Malformed("packet too long for GCM"))?;
                out.extend_from_slice(&tag);
                out.extend_from_slice(&e_index);
            }
        }
        // The index restarts after 2^31 − 1: replace the window outright.
        match self.rtcp_windows.0.iter_mut().find(|w| w.ssrc == ssrc) {
            Some(w) => w.highest = index,
            None => self.rtcp_windows.accept(ssrc, index),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
